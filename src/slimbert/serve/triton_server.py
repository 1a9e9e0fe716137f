"""A Triton model repository on a real, local tritonserver: the one the nvidia-pytriton wheel ships.

The `nvidia-pytriton` wheel carries a CPU-capable `tritonserver` (2.51) with the Python backend
and no onnxruntime backend, so it serves the repositories `slimbert export --triton
--triton-backend python` writes. The wheel requires numpy < 2, and the server's Python models
run in the Python environment it is installed in, so it lives in an environment of its own
(`make triton-env` makes `.venv-triton`: nvidia-pytriton, numpy < 2, onnxruntime, tokenizers),
apart from slimbert's.

    with TritonServer(repo, env=Path(".venv-triton")) as server:
        urllib.request.urlopen(f"{server.http_url}/v2/health/ready")

or, to serve a repository until Ctrl-C:

    python -m slimbert.serve.triton_server runs/triton --env .venv-triton --http-port 8000

The server runs from the wheel's files as installed: the backend folder it is given holds links
to the Python backend's files and the stub built for the environment's Python version, as
pytriton itself arranges it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from slimbert.errors import SlimbertError

MAKE_ENV = (
    "make triton-env (a venv with nvidia-pytriton, numpy<2, onnxruntime and tokenizers: the "
    "wheel's server needs numpy<2, which slimbert's own environment does not use)"
)


@dataclass(frozen=True)
class ServerFiles:
    """Where the wheel's server is inside a Python environment."""

    env: Path
    site_packages: Path
    python_version: str  # "3.11": the backend stub must match the environment's Python

    @property
    def root(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def libraries(self) -> list[Path]:
        return [self.site_packages / "nvidia_pytriton.libs", self.root / "lib"]

    @property
    def stub(self) -> Path:
        return (
            self.root / "python_backend_stubs" / self.python_version / "triton_python_backend_stub"
        )


def find_server(env: Path) -> ServerFiles:
    """The tritonserver of the nvidia-pytriton wheel installed in the venv `env`."""
    env = Path(env).resolve()  # the backend folder links into it from elsewhere
    found = sorted(env.glob("lib/python3.*/site-packages/pytriton/tritonserver/bin/tritonserver"))
    if not found:
        raise SlimbertError(f"no tritonserver in {env}: {MAKE_ENV}")
    site_packages = found[-1].parents[3]
    files = ServerFiles(env, site_packages, site_packages.parent.name.removeprefix("python"))
    if not files.stub.is_file():
        raise SlimbertError(
            f"the nvidia-pytriton wheel in {env} has no Python backend stub for Python "
            f"{files.python_version}; make the environment with Python 3.8 to 3.13"
        )
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """tritonserver on `repo`, from the environment `env`: started on entry (ready when `with`
    returns), stopped on exit. Ports are free ones unless given; `log` keeps the server's output.
    """

    def __init__(
        self,
        repo: Path,
        env: Path,
        http_port: int | None = None,
        grpc_port: int | None = None,
        log: Path | None = None,
        ready_timeout: float = 120.0,
        metrics_port: int | None = None,
    ):
        self.repo = Path(repo).resolve()
        self.files = find_server(env)
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port  # None: no metrics endpoint
        self.ready_timeout = ready_timeout
        self._log_path = log
        self._process: subprocess.Popen | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _backends(self, root: Path) -> Path:
        """A backend folder: links to the wheel's Python backend and the stub for this Python."""
        python = root / "backends" / "python"
        python.mkdir(parents=True)
        for item in (self.files.root / "backends" / "python").iterdir():
            (python / item.name).symlink_to(item)
        shutil.copy2(self.files.stub, python / "triton_python_backend_stub")
        return root / "backends"

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libraries = ":".join(str(p) for p in self.files.libraries)
        env["LD_LIBRARY_PATH"] = ":".join(filter(None, [libraries, env.get("LD_LIBRARY_PATH")]))
        # the Python models import numpy < 2, onnxruntime and tokenizers from the server's venv
        env["PYTHONPATH"] = str(self.files.site_packages)
        env["PATH"] = f"{self.files.env / 'bin'}:{env['PATH']}"
        env.pop("PYTHONHOME", None)
        return env

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if self._log_path is None or not self._log_path.is_file():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> TritonServer:
        self._workdir = tempfile.TemporaryDirectory(prefix="slimbert-triton-")
        root = Path(self._workdir.name)
        if self._log_path is None:
            self._log_path = root / "tritonserver.log"
        command = [
            str(self.files.binary),
            f"--model-repository={self.repo}",
            f"--backend-directory={self._backends(root)}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            *(
                [f"--metrics-port={self.metrics_port}"]
                if self.metrics_port
                else ["--allow-metrics=false"]
            ),
            "--exit-on-error=true",
            "--strict-readiness=true",
        ]
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self._environment()
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise SlimbertError(
                    f"tritonserver exited ({self._process.returncode}) before it was ready:\n{tail}"
                )
            try:
                with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise SlimbertError(f"tritonserver not ready after {self.ready_timeout:.0f} s:\n{tail}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve a Triton repository (export --triton-backend python) on the "
        "tritonserver of the nvidia-pytriton wheel, until Ctrl-C."
    )
    parser.add_argument("repo", type=Path, help="the repository export --triton wrote")
    parser.add_argument("--env", type=Path, default=Path(".venv-triton"), help="its venv")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    args = parser.parse_args(argv)
    try:
        with TritonServer(
            args.repo, args.env, args.http_port, args.grpc_port, metrics_port=args.metrics_port
        ) as server:
            print(
                f"tritonserver ready: HTTP {server.http_url}, gRPC {server.grpc_url}, "
                f"metrics http://127.0.0.1:{args.metrics_port}/metrics"
            )
            while server.running:
                time.sleep(1)
            print(server.log_tail())
            return 1
    except SlimbertError as error:
        print(f"Error: {error}")
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
