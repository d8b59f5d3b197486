"""Dependencies go one way (benchmarks, export -> l3ic; export never -> benchmarks; within l3ic, the front ends ->
the library, and each library module only on those before it, the stages in the order data flows), one list of
image suffixes, one ``list_images``, and every atomic file write through ``l3ic.files``.  Static checks on the
sources, plus what the shared helpers do."""
import ast
import glob
import os
import re

import pytest

from conftest import REPO

SOURCES = {pkg: sorted(glob.glob(os.path.join(REPO, *pkg.split("/"), "*.py"))) for pkg in ("src/l3ic", "export", "benchmarks")}
ALL_SOURCES = [p for paths in SOURCES.values() for p in paths]
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}


def tree(path):
    with open(path) as f:
        return ast.parse(f.read(), path)


def imported_modules(path):
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def rel(path):
    return os.path.relpath(path, REPO)


# The library, in the order it may depend on itself: a module imports only modules before it.  First what every
# stage uses (errors, files, images, the container, the FSE coder, the entropy model, the model), then the stages
# in the order data flows through them (docs/architecture.md), then what puts them together.
LIBRARY = ["errors", "quality", "progress", "files", "cache", "image", "lossless", "metrics", "fse", "container",
           "hyperprior", "model", "options",
           "tiling", "analysis", "entropy", "reader", "synthesis", "refine", "target", "codec", "evaluate"]
STAGES = ["analysis", "entropy", "synthesis"]  # encode: analysis -> entropy -> container; decode: -> synthesis
FRONT_ENDS = {"cli", "encode", "decode", "info", "batch", "batch_ray", "pillow", "web", "__main__"}
PACKAGE = os.path.join(REPO, "src", "l3ic")


def l3ic_imports(path):
    """The l3ic modules a source file imports (``l3ic.X`` and ``from l3ic import X`` alike), by their top name."""
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[1] for a in node.names if a.name.startswith("l3ic."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "l3ic":
            yield from (a.name for a in node.names if a.name not in ("__version__",))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("l3ic."):
            yield node.module.split(".")[1]


def l3ic_modules():
    """{top name: its source files}: l3ic's modules, a subpackage (l3ic/entropy/...) as one."""
    found = {}
    for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True):
        parts = os.path.relpath(path, PACKAGE).split(os.sep)
        found.setdefault(parts[0][:-3] if len(parts) == 1 else parts[0], []).append(path)
    found.pop("__init__")
    return found


def test_every_module_is_placed():
    """A new module is either a front end or placed in the library's order."""
    assert set(l3ic_modules()) == set(LIBRARY) | FRONT_ENDS, set(l3ic_modules()) ^ (set(LIBRARY) | FRONT_ENDS)
    assert [m for m in LIBRARY if m in STAGES] == STAGES


def test_setup_installs_every_subpackage():
    """setup.py lists its packages: a new subpackage of l3ic must be listed, or an installed l3ic lacks it."""
    with open(os.path.join(REPO, "setup.py")) as f:
        listed = set(re.findall(r'"([\w.]+)"', re.search(r"packages=\[([^\]]*)\]", f.read()).group(1)))
    found = {"l3ic." + name for name, paths in l3ic_modules().items() if any(p.endswith("__init__.py") for p in paths)}
    assert found <= listed, found - listed


def test_the_library_never_imports_the_front_ends():
    bad = ["%s imports l3ic.%s" % (rel(p), m) for name, paths in l3ic_modules().items() if name in LIBRARY
           for p in paths for m in l3ic_imports(p) if m in FRONT_ENDS]
    assert not bad


def test_library_modules_import_only_those_before_them():
    """So the stages depend on one another in the order data flows: analysis, entropy coding, synthesis (and
    refinement, the target search and the codec after them); the container, the entropy model and the model below
    them all.  Imports inside functions count too."""
    rank = {name: i for i, name in enumerate(LIBRARY)}
    bad = ["%s imports l3ic.%s" % (rel(p), m) for name, paths in l3ic_modules().items() if name in rank
           for p in paths for m in l3ic_imports(p) if m in rank and m != name and rank[m] > rank[name]]
    assert not bad


@pytest.mark.parametrize("package, forbidden", [("export", ("benchmarks",)), ("src/l3ic", ("benchmarks", "export"))])
def test_imports_go_one_way(package, forbidden):
    bad = ["%s imports %s" % (rel(p), m) for p in SOURCES[package] for m in imported_modules(p)
           if m.split(".")[0] in forbidden]
    assert not bad


def test_benchmarks_need_no_tensorflow_from_export():
    """benchmarks may use export only where that needs no TensorFlow: today they do not use it at all."""
    bad = ["%s imports %s" % (rel(p), m) for p in SOURCES["benchmarks"] for m in imported_modules(p)
           if m.split(".")[0] in ("export", "tensorflow", "keras", "tf2onnx")]
    assert not bad


def test_one_list_of_image_suffixes():
    """No literal tuple/list/set of two or more image suffixes anywhere but l3ic.image.IMAGE_SUFFIXES."""
    found = []
    for path in ALL_SOURCES:
        for node in ast.walk(tree(path)):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                strings = {e.value.lower() for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if len(strings & IMAGE_EXTENSIONS) >= 2:
                    found.append("%s:%d" % (rel(path), node.lineno))
    assert len(found) == 1 and found[0].startswith(os.path.join("src", "l3ic", "image.py") + ":"), found


def test_one_list_images():
    found = ["%s:%d" % (rel(p), node.lineno) for p in ALL_SOURCES for node in ast.walk(tree(p))
             if isinstance(node, ast.FunctionDef) and node.name == "list_images"]
    assert len(found) == 1 and found[0].startswith(os.path.join("src", "l3ic", "image.py") + ":"), found


def test_the_users_share_the_one_list():
    from l3ic import encode, image
    from export import data
    assert encode.IMAGE_SUFFIXES is image.IMAGE_SUFFIXES
    assert data.IMAGE_SUFFIXES is image.IMAGE_SUFFIXES
    assert set(image.IMAGE_SUFFIXES) == IMAGE_EXTENSIONS


def test_list_images(tmp_path):
    from l3ic import batch
    from l3ic.errors import ImageError
    from l3ic.image import list_images
    for name in ("b.png", "A.JPG", "c.webp", "d.txt", "e.l3ic", "noext"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "f.png").mkdir()  # a folder with an image's name is not an image
    expected = [str(tmp_path / n) for n in ("A.JPG", "b.png", "c.webp")]
    assert list_images(str(tmp_path)) == expected
    assert list_images(str(tmp_path), (".l3ic",)) == [str(tmp_path / "e.l3ic")]
    assert batch.expand([str(tmp_path)]) == (expected, True)
    (tmp_path / "empty").mkdir()
    assert list_images(str(tmp_path / "empty")) == []
    with pytest.raises(ImageError, match="not found"):
        list_images(str(tmp_path / "missing"))


def test_list_images_can_require_images(tmp_path):
    from l3ic.errors import ImageError
    from l3ic.image import list_images
    with pytest.raises(ImageError, match="no images in"):
        list_images(str(tmp_path), required=True)


def test_training_images_exit_with_one_line(tmp_path):
    from export import data
    (tmp_path / "x.png").write_bytes(b"x")
    assert data.image_paths(str(tmp_path)) == [str(tmp_path / "x.png")]
    (tmp_path / "empty").mkdir()
    for folder in ("missing", "empty"):
        with pytest.raises(SystemExit, match="^error: .*(not found|no images)"):
            data.image_paths(str(tmp_path / folder))


# Renames that are not "write a temporary file, then rename it": moving already complete files from a staging
# folder into a model folder, and export.train's swap of a whole checkpoint folder (l3ic.files writes files).
# ONNX Runtime writes an optimised graph itself, into a temporary file that l3ic.model then renames into the cache.
RENAMES_ALLOWED = {("src/l3ic/files.py", "write_atomic"), ("src/l3ic/model.py", "_new_session"),
                   ("export/to_onnx.py", "upgrade"), ("export/to_onnx.py", "install"), ("export/train.py", "save")}


def test_atomic_writes_go_through_l3ic_files():
    found = set()
    for path in ALL_SOURCES:
        def visit(node, function):
            for child in ast.iter_child_nodes(node):
                name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
                if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                        and child.func.attr in ("replace", "rename", "renames")
                        and isinstance(child.func.value, ast.Name) and child.func.value.id in ("os", "shutil")):
                    found.add((rel(path).replace(os.sep, "/"), function))
                visit(child, name)
        visit(tree(path), None)
    assert found <= RENAMES_ALLOWED, sorted(found - RENAMES_ALLOWED)
