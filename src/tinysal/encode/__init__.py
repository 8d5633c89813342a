"""Saliency-guided encoding: block QP-offset maps and ROI encodes (``roi``), and the plain-vs-ROI A/B with
Bjøntegaard delta rate (``roi_eval``)."""
