"""Where a batch's jobs run: ``local`` (worker processes on this machine) or ``ray`` (one Ray task per job).

Both run a job the same way, so they give the same figures: ``python -m tinysal.batch.worker`` in a process of its
own (its own process group, so a stopped job takes its FFmpeg children with it), fed the job's options as JSON and
answering with the small result. On Ray that process is started by a Ray task on whichever node has the CPUs; the
task gets file paths (never decoded frames: a compressed clip is ~1,000x smaller than its frames) and returns the
answer to the driver, which writes the record. So records and the summary live in one place (the driver's --out
folder, under its lock) and nodes need no write access there; what nodes need is the inputs (and, for encodes, the
outputs' folder) at the same paths as the driver: a shared filesystem (docs/scale.md).

A job's worker is told to die with the process that started it (prctl PR_SET_PDEATHSIG on Linux): ``kill -9`` of
the batch, or of the Ray worker running a cancelled task, ends the job too, and its FFmpeg child with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

from tinysal.errors import TinysalError

#: seconds to wait for a Ray address to answer, and for ``ray.init`` to join it, before saying so
CONNECT_TIMEOUT = 15.0
#: what a worker's answer is: (the worker's JSON answer, or None when it died; what happened)
Answer = tuple[dict[str, Any] | None, str]


def _answer(p: subprocess.Popen, out: str, err: str) -> Answer:
    if p.returncode != 0:
        how = f"signal {-p.returncode}" if p.returncode < 0 else f"exit {p.returncode}"
        last = err.strip().splitlines()[-1:] if err.strip() else []
        return None, f"worker died ({how}){': ' + last[0][:200] if last else ''}"
    try:
        return json.loads(out), ""
    except ValueError:
        return None, "worker died (no answer)"


def _start_worker() -> subprocess.Popen:
    env = {**os.environ, "TINYSAL_BATCH_PARENT": str(os.getpid())}  # the worker dies with this process
    # BLAS/OpenMP pools of numpy and friends: one thread, as on the encoder's path; the job's own threads (libvmaf,
    # ONNX Runtime, x264/x265) are set from its options
    env.update(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"))
    return subprocess.Popen([sys.executable, "-m", "tinysal.batch.worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=env)  # fmt: skip


def _kill(p: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)


def run_in_worker(payload: str) -> Answer:
    """One job in a worker process, start to end; the body of a Ray task. If the task is cancelled (Ray raises
    in it) the worker's process group is killed before the exception goes on."""
    p = _start_worker()
    try:
        out, err = p.communicate(payload)
    except BaseException:
        _kill(p)
        raise
    return _answer(p, out, err)


class LocalEngine:
    """Worker processes on this machine, one per job in flight; ``stop`` kills every one (and its children)."""

    name = "local"

    def __init__(self) -> None:
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def slots(self, threads: int, wanted: int = 0) -> int:
        """Jobs at once: ``wanted``, but never more than the cores hold at ``threads`` each."""
        cap = max(1, (os.cpu_count() or 1) // threads)
        return min(wanted, cap) if wanted else cap

    def run(self, payload: str, threads: int) -> Answer:  # noqa: ARG002 - the pool sized itself by threads
        with self.lock:
            if self.stopping:
                return None, "stopped"
            p = _start_worker()
            self.procs.add(p)
        try:
            out, err = p.communicate(payload)
        finally:
            with self.lock:
                self.procs.discard(p)
        return _answer(p, out, err)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for p in self.procs:
                _kill(p)

    def close(self) -> None:
        pass


def _check_answers(address: str) -> None:
    """A host:port that does not take a connection is one line after CONNECT_TIMEOUT, not a hang in ray.init."""
    url = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = url.hostname, url.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise TinysalError(f"--address {address!r}: give auto, host:port or ray://host:port")
    try:
        conn = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise TinysalError(f"Ray at {address} does not answer ({why}, waited up to {CONNECT_TIMEOUT:g} s)") from None
    with conn:
        if not _speaks_grpc(conn):
            raise TinysalError(f"{address} answers but is not Ray (no gRPC there): check the host and port "
                               "(ray start --head prints the address to join)")  # fmt: skip


#: HTTP/2's connection preface and an empty SETTINGS frame: what a gRPC client sends first
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _speaks_grpc(conn: socket.socket) -> bool:
    """Whether the peer is an HTTP/2 server, as Ray's GCS and its client server (both gRPC) are: it answers the
    preface with a SETTINGS frame (type 4). Anything else (an HTTP/1 server, a database, silence) is not Ray, and
    ray.init would only hang on it, printing its C++ client's log lines."""
    try:
        conn.settimeout(min(CONNECT_TIMEOUT, 5.0))
        conn.sendall(_H2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:
        return False
    return head[3] == 0x04


def _ray_init(ray: Any, address: str | None) -> None:
    """``ray.init``, one line on failure. Joining a cluster runs in a thread, bounded by CONNECT_TIMEOUT (a host that
    takes the connection but is not Ray would hang it); a local start runs here, on the caller's thread, because
    Ray ties the processes it starts (GCS, raylet) to the thread that started them (they die with it)."""
    box: dict[str, BaseException] = {}

    def init() -> None:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e

    if address is None:
        init()
    else:
        t = threading.Thread(target=init, name="tinysal-ray-init", daemon=True)
        t.start()
        t.join(CONNECT_TIMEOUT)
        if t.is_alive():
            raise TinysalError(f"Ray at {address} did not answer within {CONNECT_TIMEOUT:g} s")
    if "error" in box:
        first = (str(box["error"]).strip().splitlines() or [type(box["error"]).__name__])[0]
        raise TinysalError(f"cannot {'join Ray at ' + address if address else 'start Ray'}: {first[:300]}")


class RayEngine:
    """One Ray task per job (``num_cpus`` = the job's threads), each running :func:`run_in_worker`.

    With no address a local Ray is started (and shut down at the end); ``auto`` or ``host:port`` / ``ray://host:port``
    joins a running cluster; a Ray already initialised in this process (a test session, a notebook) is used as it is.
    A task whose Ray worker dies answers as a worker that died, so ``--retries`` covers both; Ray's own retries are
    off (``max_retries=0``) so that one count holds.
    """

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise TinysalError("--engine ray needs Ray: pip install 'tinysal[ray]'") from None
        self.ray = ray
        self.own = not ray.is_initialized()
        if self.own:
            if address and address != "auto":
                _check_answers(address)
            _ray_init(ray, address or None)
        self.task = ray.remote(run_in_worker)
        self.refs: set[Any] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def slots(self, threads: int, wanted: int = 0) -> int:
        """Jobs in flight: ``wanted`` (Ray queues what its CPUs cannot take yet: an autoscaling cluster grows for
        them), or as many as the cluster's CPUs now hold at ``threads`` each."""
        return wanted or max(1, int(self.ray.cluster_resources().get("CPU", 1)) // threads)

    def run(self, payload: str, threads: int) -> Answer:
        from ray.exceptions import RayTaskError, TaskCancelledError

        with self.lock:
            if self.stopping:
                return None, "stopped"
            ref = self.task.options(num_cpus=threads, max_retries=0, name="tinysal-batch-job").remote(payload)
            self.refs.add(ref)
        try:
            return self.ray.get(ref)
        except TaskCancelledError:
            return None, "stopped"
        except RayTaskError as e:  # run_in_worker raised: the worker could not be started on that node
            return {"status": "failed", "error": f"on a Ray node: {str(e.cause)[:300]}"}, ""
        except self.ray.exceptions.RayError as e:  # the Ray worker or its node died: a worker that died
            return None, f"worker died (Ray: {type(e).__name__})"
        finally:
            with self.lock:
                self.refs.discard(ref)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for ref in self.refs:  # force: the Ray worker is killed, and its job's worker dies with it
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.own:
            with contextlib.suppress(Exception):
                self.ray.shutdown()


def make(engine: str, address: str | None = None) -> LocalEngine | RayEngine:
    if engine == "local":
        if address:
            raise TinysalError("--address is for --engine ray")
        return LocalEngine()
    if engine == "ray":
        return RayEngine(address)
    raise TinysalError(f"--engine must be local or ray, got {engine!r}")
