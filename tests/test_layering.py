"""Dependencies go one way (benchmarks, export -> l3ic; export never -> benchmarks), one list of image suffixes, one
``list_images``, and every atomic file write through ``l3ic.files``.  Static checks on the sources, plus what the
shared helpers do."""
import ast
import glob
import os

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
