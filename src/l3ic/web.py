"""``python -m l3ic.web [FILE.l3ic]``: view .l3ic files in a web browser, decoded in the browser itself.

This serves, on 127.0.0.1 only, the viewer page of the checkout's ``web/`` folder (see docs/web.md),
onnxruntime-web's WebAssembly files from ``web/node_modules`` (``npm ci`` in ``web/`` installs them;
nothing is fetched from the internet at run time), the entropy decoder ``web/dist/l3ic_fse.wasm``
(built on first use by ``web/build_wasm.py`` with clang), and the installed models, current and legacy
(``l3ic.model.model_roots``): each model's ``manifest.json``, ``decoder.onnx`` and ``entropy_model.npz``
under ``/models/<n>/``, listed in ``/models/index.json``.  The page picks the model a file names by
its identity and checks the files' SHA-256 itself.

The responses carry the cross-origin isolation headers (COOP/COEP), so that ONNX Runtime may run
several WebAssembly threads.  ``Server`` also hosts the automation that ``benchmarks/web_decode.py``
drives (a harness object answering ``/harness/...``).
"""
import argparse
import importlib.util
import json
import os
import sys
import threading
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

from l3ic.errors import L3icError
from l3ic.model import model_file, model_roots

WEB_ENV = "L3IC_WEB"  # the web/ folder, where it is not the checkout's
DEFAULT_PORT = 8029
ORT_DIST = os.path.join("node_modules", "onnxruntime-web", "dist")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_FILES = ("manifest.json", "decoder.onnx", "entropy_model.npz")
PAGES = ("index.html", "harness.html", "viewer.css")
TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css", ".js": "text/javascript", ".mjs": "text/javascript",
         ".wasm": "application/wasm", ".json": "application/json"}
HEADERS = {  # cross-origin isolation (SharedArrayBuffer for ONNX Runtime's threads); nothing is cached
    "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def web_root():
    """The ``web/`` folder: $L3IC_WEB, the checkout this module runs from, or ./web; L3icError if none."""
    checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "web")
    for folder in (os.environ.get(WEB_ENV), checkout, os.path.abspath("web")):
        if folder and os.path.isfile(os.path.join(folder, "index.html")) and os.path.isdir(os.path.join(folder, "src")):
            return folder
    raise L3icError("the browser decoder (web/) is not here: run this from an l3ic checkout, or set %s to its web/ folder"
                    % WEB_ENV)


def ensure_built(root):
    """Check onnxruntime-web is installed and build the entropy decoder's WebAssembly if it is missing or stale."""
    if not all(os.path.isfile(os.path.join(root, ORT_DIST, name)) for name in ORT_FILES):
        raise L3icError("onnxruntime-web is not installed: run npm ci in %s" % root)
    spec = importlib.util.spec_from_file_location("l3ic_build_wasm", os.path.join(root, "build_wasm.py"))
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    try:
        builder.build()
    except builder.BuildError as e:
        raise L3icError(str(e))


def installed_models():
    """[(folder, manifest, legacy)] of every installed model, the current ones first (as find_decoder looks)."""
    current, legacy = [], []
    for root in model_roots():
        names = sorted(os.listdir(root))
        current += [(os.path.join(root, n), False) for n in names if n != "legacy"]
        folder = os.path.join(root, "legacy")
        if os.path.isdir(folder):
            legacy += [(os.path.join(folder, n), True) for n in sorted(os.listdir(folder))]
    found, seen = [], set()
    for folder, is_legacy in current + legacy:
        real = os.path.realpath(folder)
        try:
            with open(os.path.join(folder, "manifest.json")) as f:
                manifest = json.load(f)
            manifest["name"], manifest["files"]["decoder.onnx"]["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a model folder
        if real not in seen:
            seen.add(real)
            found.append((folder, manifest, is_legacy))
    return found


class Server(ThreadingHTTPServer):
    """The local web server: the page, onnxruntime-web, the entropy decoder, the models, ``files`` to view.

    ``files``: name -> path of the files the page may open (``/file/<name>``); ``harness``: an object
    with ``next_job()``, ``job_input(id)`` and ``deliver(id, body)`` (benchmarks/web_decode.py), or None.
    """

    daemon_threads = True

    def handle_error(self, request, client_address):
        """A page that went away mid-answer (a closed tab, the harness's browser ended) is not an error to report."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def __init__(self, root, host="127.0.0.1", port=DEFAULT_PORT, files=None, harness=None):
        self.root = root
        self.models = installed_models()
        self.files = dict(files or {})
        self.harness = harness
        super().__init__((host, port), Handler)

    @property
    def url(self):
        host, port = self.server_address[:2]
        return "http://%s:%d/" % (host, port)

    def static_path(self, path):
        """The file a GET path names, or None: only the listed pages, web/src/*.js, the decoders and the models."""
        parts = path.strip("/").split("/")
        if parts == [""]:
            parts = ["index.html"]
        if len(parts) == 1 and parts[0] in PAGES:
            return os.path.join(self.root, parts[0])
        if len(parts) == 2 and parts[0] == "src" and parts[1].endswith(".js"):
            return os.path.join(self.root, "src", parts[1])
        if len(parts) == 2 and parts[0] == "ort" and parts[1] in ORT_FILES:
            return os.path.join(self.root, ORT_DIST, parts[1])
        if parts == ["dist", "l3ic_fse.wasm"]:
            return os.path.join(self.root, "dist", "l3ic_fse.wasm")
        if len(parts) == 3 and parts[0] == "models" and parts[1].isdigit() and int(parts[1]) < len(self.models) \
                and parts[2] in MODEL_FILES:
            return model_file(self.models[int(parts[1])][0], parts[2])  # a file shared with another model too
        if len(parts) == 2 and parts[0] == "file" and unquote(parts[1]) in self.files:
            return self.files[unquote(parts[1])]
        return None

    def model_index(self):
        """/models/index.json: the installed models' manifests and where their files are served."""
        return [{"url": "%d/" % i, "manifest": manifest, "legacy": legacy}
                for i, (_, manifest, legacy) in enumerate(self.models)]


class Handler(BaseHTTPRequestHandler):
    """GET for the static files and the model index; GET and POST /harness/... for the harness."""

    server_version = "l3ic-web"

    def log_message(self, format, *args):  # one line per request would drown the command's own output
        pass

    def send(self, body, content_type, status=HTTPStatus.OK):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, value):
        self.send(json.dumps(value).encode("utf-8"), TYPES[".json"])

    def do_GET(self):
        path = urlsplit(self.path).path
        harness = self.server.harness if self.command == "GET" else None  # a HEAD must not take a job
        if path == "/models/index.json":
            return self.send_json(self.server.model_index())
        if harness is not None and path == "/harness/next":
            return self.send_json(harness.next_job())
        if harness is not None and path.startswith("/harness/input/"):
            data = harness.job_input(path.rsplit("/", 1)[1])
            return self.send(data, "application/octet-stream") if data is not None else self.not_found()
        file = self.server.static_path(path)
        if file is None or not os.path.isfile(file):
            return self.not_found()
        with open(file, "rb") as f:
            self.send(f.read(), TYPES.get(os.path.splitext(file)[1], "application/octet-stream"))

    do_HEAD = do_GET

    def do_POST(self):
        path = urlsplit(self.path).path
        harness = self.server.harness
        if harness is None or not path.startswith("/harness/result/"):
            return self.not_found()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        harness.deliver(path.rsplit("/", 1)[1], body)
        self.send(b"", "text/plain")

    def not_found(self):
        self.send(b"not found\n", "text/plain", HTTPStatus.NOT_FOUND)


def serve_in_thread(server):
    """Run ``server`` in a daemon thread; the caller shuts it down with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="l3ic-web", daemon=True)
    thread.start()
    return thread


def start(files=None, harness=None, host="127.0.0.1", port=DEFAULT_PORT):
    """A ready ``Server`` (web/ found, its decoders built) for ``files`` (paths); L3icError with one line if not."""
    root = web_root()
    ensure_built(root)
    named = {}
    for path in files or []:
        if not os.path.isfile(path):
            raise L3icError("no such file: %s" % path)
        named[os.path.basename(path)] = os.path.abspath(path)
    try:
        return Server(root, host, port, named, harness)
    except OSError as e:
        raise L3icError("cannot listen on %s:%d: %s" % (host, port, e.strerror or e))


def page_url(server, name=None):
    """The viewer's address, opening the served file ``name`` if given."""
    return server.url + ("?open=file/%s" % quote(name) if name else "")


def port_number(text):
    """argparse type: a TCP port, 0..65535."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError("must be a port number 0..65535, got %r" % text)
    return int(text)


def main(argv=None, prog="python -m l3ic.web"):
    from l3ic.cli import Parser
    parser = Parser(prog=prog, description="Serve the l3ic viewer page and the installed models on "
                                     "this computer: .l3ic files are decoded in the browser (see docs/web.md).")
    parser.add_argument("file", nargs="?", help="an .l3ic file for the page to open")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="port (default %(default)d; 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this computer only)")
    parser.add_argument("--open", action="store_true", help="open the page in the default web browser")
    args = parser.parse_args(argv)
    server = start([args.file] if args.file else [], host=args.host, port=args.port)
    url = page_url(server, os.path.basename(args.file) if args.file else None)
    print("l3ic: serving the viewer at %s (Ctrl-C to stop)" % url, flush=True)
    if args.open:
        webbrowser.open(url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    from l3ic.cli import run
    sys.exit(run(main))
