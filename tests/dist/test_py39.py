"""Everything that ships is Python 3.9 syntax: lib/, and every module inside dist/route."""
import ast
import zipfile

from conftest import REPO


def compile39(source, filename):
    tree = ast.parse(source, filename, feature_version=(3, 9))
    compile(tree, filename, "exec", dont_inherit=True)


def test_lib_is_python_39():
    files = sorted((REPO / "lib").rglob("*.py")) + [REPO / "bin" / "route", REPO / "tools" / "build_dist.py"]
    assert len(files) > 10
    for path in files:
        compile39(path.read_text(encoding="utf-8"), str(path))


def test_the_bundle_is_python_39(dist_route):
    with zipfile.ZipFile(dist_route) as z:
        names = [n for n in z.namelist() if n.endswith(".py")]
        assert len(names) > 50
        for name in names:
            compile39(z.read(name).decode("utf-8"), name)
