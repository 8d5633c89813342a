"""Features and scores: the ``mobilesal`` saliency feature, real VMAF through FFmpeg's libvmaf (``vmaf``), the
libvmaf-style scoring context (``scoring``), the output writers (``output``) and maps/sheets/plots (``visual``)."""
