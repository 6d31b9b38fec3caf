"""A stoppable TCP front for the test S3 endpoint: "the endpoint went down" without losing moto's state.

moto's server keeps every bucket in memory, so stopping and restarting the real process would also wipe
the source frame and the cube; what a client sees when an endpoint goes down is its address refusing
connections. The proxy listens on its own port and forwards to moto; ``stop()`` ends it with every open
connection (the port then refuses, as a stopped server's does); ``start()`` listens again on the same port.

The proxy runs in its own process. It used to be threads of the test process, and a test hung in a
fresh-clone run under load: GDAL (rasterio.open, reading the source through the proxy) held the GIL while it
waited for the proxy's bytes, and the proxy's accept thread waited for the GIL to start the thread that would
send them. A process of its own cannot be starved by what the client holds.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import threading


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _serve(port: int, target: tuple[str, int], ready: mp.synchronize.Event) -> None:
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", port))
    lst.listen(64)
    ready.set()
    while True:
        client, _ = lst.accept()
        try:
            upstream = socket.create_connection(target)
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


class EndpointProxy:
    def __init__(self, target: str) -> None:
        host, port = target.rsplit("//", 1)[-1].split(":")
        self.target = (host, int(port))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc: mp.process.BaseProcess | None = None
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self.stops = 0

    def start(self) -> None:
        """Listen again (nothing to do when running: several threads' retries may call it at once)."""
        with self._start_lock:
            if self.running:
                return
            ctx = mp.get_context("spawn")  # the test process has threads (and Ray, Dask): no fork
            ready = ctx.Event()
            proc = ctx.Process(target=_serve, args=(self.port, self.target, ready), daemon=True)
            proc.start()
            if not ready.wait(60):
                proc.kill()
                raise RuntimeError(f"endpoint proxy on port {self.port} did not start")
            with self._lock:
                self._proc = proc

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            self.stops += 1
        if proc is not None:
            proc.kill()  # the kernel closes its listener and every connection: the port refuses
            proc.join()

    @property
    def running(self) -> bool:
        return self._proc is not None
