#!/usr/bin/env python3
"""Build dist/route: the whole plugin in ONE executable file, for /opt/cni/bin (issue 7).

    python3 tools/build_dist.py [--output dist/route] [--python PYTHON]

The file is a zipapp (PEP 441): a two-line shell header (HEADER: it runs `python3 -S -E` on the file itself,
python3 found on the runtime's PATH), then a zip holding

    __main__.py, _route_boot.py   start-up: keep only the stdlib and the zip on sys.path, pin the archive
    cniroute/                     lib/cniroute, with schemas/ inside the package, and _bundle.json
    sh, jsonschema, attrs, pyrsistent   pinned pure-Python wheels (pip install --target, hashes checked)
    *.dist-info/                  their metadata and licence files

Every module is there as source AND as a legacy `foo.pyc` beside it (zipimport never reads __pycache__/),
compiled as unchecked-hash pycs by the interpreter given with --python (default: this one). A node whose
python3 has the same minor version loads the bytecode; any other python3 >= 3.9 compiles the sources in
memory instead (correct, only slower to start).

Reproducible: same commit + same pins + same Python (minor version and zlib) -> byte-identical file.
Needs PyPI (or a pip cache/mirror configured for pip); nothing else.
"""
import argparse
import hashlib
import json
import marshal
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lib"))
from cniroute import PYTHON_LAUNCH, SUPPORTED_VERSIONS  # noqa: E402  (the package's __init__ imports nothing)
from cniroute.errors import DamagedBuild  # noqa: E402  (errors imports nothing)

# What a CNI call imports, as bytecode in a section of its own between the header and the zip (see BOOT).
CODE_SECTION = ("cniroute", "sh")
CODE_MARK = b"#route-code\n"
SEAL_AT = len(CODE_MARK) + 4  # where the section holds the file's size and the zip directory's place and CRC (seal)
BOOT_ROOM = 1 << 16  # the header and _route_boot's bytecode are within the file's first BOOT_ROOM bytes

# What starts every call, in Python 3.4's syntax (an old python3 must get to cli's version check): the header runs
# it with `-c`, and it is __main__.py as well, for `python3 dist/route`. It runs _route_boot from its bytecode at
# the start of the code section (importing it from the zip would read the zip's directory: ~1.5 ms of CPU), or
# from the zip for another Python. Anything that keeps the file from starting (cut short, damaged: _route_boot
# checks the file's size and the CRC-32 of the code section and of the zip's directory against the build's) is
# answered as the plugin answers: CNI error JSON on stdout, code DamagedBuild.code.
LAUNCHER = """import sys
if sys.argv[0] == "-c":  # the header: argv as `python3 FILE ARGS` has it
    del sys.argv[0]
del sys.path[0]  # the current directory (-c) or the zip: no import searches either before prepare()
try:
    import marshal, os
    fd = os.open(sys.argv[0], os.O_RDONLY)
    head = os.pread(fd, BOOT_ROOM, 0)
    os.close(fd)
    at = head.index(MARK) + len(MARK)
    if head[at:at + 4] == getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", None):
        boot = sys.modules["_route_boot"] = type(sys)("_route_boot")  # its bytecode, from the code section
        exec(marshal.loads(head[at + 40:at + 40 + int.from_bytes(head[at + 24:at + 28], "little")]), vars(boot))
    else:  # bytecode for another Python: the source, from the zip
        sys.path.insert(0, sys.argv[0])
        import _route_boot as boot
        del sys.path[0]
    run = boot.start(sys.argv[0])
except Exception as e:
    import json
    sys.stdout.write(json.dumps({"cniVersion": SUPPORTED, "code": CODE, "msg": "the plugin file cannot run",
                                 "details": "%s is damaged or cut short (%s: %s): install it again"
                                            % (sys.argv[0], type(e).__name__, e)}) + "\\n")
    sys.exit(1)
run()
""".replace("SUPPORTED", json.dumps(SUPPORTED_VERSIONS[-1])).replace("CODE", str(DamagedBuild.code)) \
    .replace("BOOT_ROOM", str(BOOT_ROOM)).replace("MARK", repr(CODE_MARK).replace("'", '"'))

# The shell runs python3 (found on the runtime's PATH) with PYTHON_LAUNCH's options on LAUNCHER and this file;
# `#!/usr/bin/env python3` could not pass options portably (`env -S` is GNU's).
HEADER = f"#!/bin/sh\n{PYTHON_LAUNCH} -c '{LAUNCHER}' \"$0\" \"$@\"\n".encode()
assert "'" not in LAUNCHER  # it is quoted for the shell


# Pure-Python wheels only (py3-none-any), installable on CPython >= 3.9. jsonschema 4.18+ needs rpds-py
# (compiled), hence 4.17.3, whose dependencies on Python >= 3.9 are only attrs and pyrsistent.
# pyrsistent's optional C extension (pvectorc) is not in its py3-none-any wheel; _route_boot also blocks it.
PINS = {
    "sh": ("2.3.0", "9b9c51f988fa91ba09e2a78edc48810d0b5a34c8cf383408e4e8c4352169f26e"),
    "jsonschema": ("4.17.3", "a870ad254da1a8ca84b6a2905cac29d265f805acc57af304784962a2aa6508f6"),
    "attrs": ("26.1.0", "c647aa4a12dfbad9333ca4e71fe62ddc36f4e63b2d260a37a8b83d2f043ac309"),
    "pyrsistent": ("0.20.0", "c55acc4733aad6560a7f5f818466631f07efc001fd023f34a6c203f8b6df0f0b"),
}
# Parts of the wheels that are never imported: left out of the file.
DROP = ("bin/", "jsonschema/tests/", "jsonschema/benchmarks/", "jsonschema/__main__.py", "jsonschema/cli.py")
DROP_SUFFIXES = (".pyi",)
# Fixed zip metadata so that the same inputs give the same bytes (zip times are local, 2 s resolution).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)

MAIN = LAUNCHER

BOOT = '''\
"""Start-up of the one-file build (dist/route), before any bundled package is imported.

start(archive): prepare(archive), then the plugin's entry (cniroute.cli.run), with the collector off. Raises when
the file is cut short or damaged, which the launcher (LAUNCHER in tools/build_dist.py) answers in CNI terms.

prepare(archive=None):
  * sys.path becomes the interpreter's standard library + [the archive]: the node's site-packages, user site
    and PYTHONPATH cannot shadow or add to what is bundled (a compiled pvectorc from the node's pyrsistent,
    another jsonschema, ...). The archive comes last, so that an import of the standard library never
    searches the zip (zipimport would read its directory once more, for the pinned path).
  * pyrsistent's C extension is blocked: its pure-Python vector is what runs.
  * the archive is opened once and imported from through /proc/self/fd/N, so a later import (jsonschema,
    sh and the person commands are imported lazily) reads this very file even if `route install`
    renamed a new build over the path meanwhile; zipimport reopens the archive by name at every import.
  * the code section between the header and the zip (CODE_MARK; the bytecode's magic number, 4 bytes; the whole
    file's size, 8; where the zip's directory starts, 8, and the CRC-32 from there to the end, 4; the length of
    this module's own bytecode, 4, and of the table, 8; the CRC-32 of both, 4;
    this module's marshalled bytecode, which the launcher runs; then the table, a marshalled
    {"modules": {name: (is package, code)}, "data": {path in the zip: bytes}}) holds what
    a CNI call imports, cniroute and sh: read at once from that descriptor and served by Bundled, a dict
    lookup and an exec where zipimport would search the zip's directory and reopen the file for each module
    (a tenth of an ADD's CPU). Bytecode for another Python (another magic number) is not used: zipimport
    then compiles their sources from the zip, as it does for every other package. A file of another size
    than built (cut short) or a section whose checksum differs (damaged) raises ValueError.
  * Python 3.9: importlib.resources.files() of a package in a zip is a zipfile.Path, whose joinpath()
    takes one part until 3.10; jsonschema 4.17.3 passes two (its vocabularies). Given 3.10's signature.
Like the start of cniroute.cli, this runs on any python3 (Python 3.4's syntax, nothing newer called), so that a
python3 too old for the plugin gets to cli's version check and answers code 106, not a traceback.
"""
import gc
import marshal
import os
import sys
import zlib

ARCHIVE = None  # the archive as started (sys.argv[0] / sys.path[0]), before pinning
CODE_MARK = CODE_MARK_VALUE


def start(archive):
    """What the launcher runs: the plugin's entry point, ready to call."""
    gc.disable()  # a call lives ~40 ms and leaves little cyclic garbage; the collector's passes cost 4% of an ADD
    prepare(archive)
    from cniroute.cli import run

    return run


def prepare(archive=None):
    """`archive`: the file, when it is not sys.path[0] (the launcher takes that off first)."""
    global ARCHIVE
    archive = ARCHIVE = os.path.abspath(sys.path.pop(0) if archive is None else archive)
    prefixes = tuple(os.path.join(p, "") for p in {sys.base_prefix, sys.base_exec_prefix})
    stdlib = [p for p in sys.path
              if p.startswith(prefixes) and not {"site-packages", "dist-packages"} & set(p.split(os.sep))]
    fd = None
    try:
        fd = os.open(archive, os.O_RDONLY | os.O_CLOEXEC)
        pinned = "/proc/self/fd/%d" % fd
        if not os.path.samestat(os.stat(pinned), os.fstat(fd)):
            raise OSError("no /proc")
    except OSError:
        pinned = archive
    sys.path[:] = stdlib + [pinned]
    table = _code_section(fd) if fd is not None else None
    if table is not None:
        sys.meta_path.insert(0, Bundled(pinned, table))
    sys.modules.setdefault("pvectorc", None)  # `from pvectorc import pvector` -> ImportError -> pure Python
    if (3, 9) <= sys.version_info < (3, 10):
        import zipfile

        one = zipfile.Path.joinpath
        zipfile.Path.joinpath = zipfile.Path.__truediv__ = lambda self, *parts: _join(one, self, parts)


def _join(one, path, parts):
    for part in parts:
        path = one(path, part)
    return path


def _code_section(fd):
    """The code section's table, or None: no section, or bytecode for another Python."""
    head = os.pread(fd, 4096, 0)
    start = head.find(CODE_MARK)
    if start < 0:
        return None
    start += len(CODE_MARK)
    magic, total, directory, directory_crc, boot, size, crc = (
        head[start:start + 4], _number(head, start + 4, 8), _number(head, start + 12, 8), _number(head, start + 20, 4),
        _number(head, start + 24, 4), _number(head, start + 28, 8), _number(head, start + 36, 4))
    if os.fstat(fd).st_size != total:
        raise ValueError("%d bytes, built with %d" % (os.fstat(fd).st_size, total))
    if zlib.crc32(os.pread(fd, total - directory, directory)) != directory_crc:
        raise ValueError("the zip directory's checksum differs from the build's")
    # importlib.util's, without importing it (Python 3.4 has no _frozen_importlib_external: no bytecode for it)
    if magic != getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", None):
        return None
    data = os.pread(fd, boot + size, start + 40)
    if zlib.crc32(data) != crc:
        raise ValueError("the code section's checksum differs from the build's")
    return marshal.loads(data[boot:])


def _number(data, at, size):
    return int.from_bytes(data[at:at + size], "little")


class Bundled(object):
    """Finds and loads the modules of the code section; reads data files for them (schemas, _bundle.json), from
    the section or else the zip. `archive`, as a zipimporter has it: install.running_artifact() reads it."""

    def __init__(self, archive, table):
        self.archive = archive
        self.modules = table["modules"]
        self.data = table["data"]

    def find_spec(self, name, path=None, target=None):
        found = self.modules.get(name)
        if found is None:
            return None
        from importlib.machinery import ModuleSpec

        where = self.archive + "/" + name.replace(".", "/")
        spec = ModuleSpec(name, self, origin=where + ("/__init__.pyc" if found[0] else ".pyc"), is_package=found[0])
        spec.has_location = True  # __file__, as zipimport gives it
        if found[0]:
            spec.submodule_search_locations = [where]
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(marshal.loads(self.modules[module.__name__][1]), module.__dict__)

    def is_package(self, name):
        return self.modules[name][0]

    def get_data(self, path):
        inside = path[len(self.archive) + 1:] if path.startswith(self.archive + "/") else None
        if inside in self.data:
            return self.data[inside]
        return self._zip().get_data(path)

    def get_source(self, name):  # for tracebacks: the module's source, which the zip holds
        where = self.archive + "/" + name.replace(".", "/") + ("/__init__.py" if self.modules[name][0] else ".py")
        return self._zip().get_data(where).decode("utf-8")

    def _zip(self):
        import zipimport

        return zipimport.zipimporter(self.archive)
'''.replace("CODE_MARK_VALUE", repr(CODE_MARK))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(REPO, "dist", "route"), help="default: dist/route")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that compiles the .pyc (use the nodes' python3 minor version)")
    parser.add_argument("--no-check", action="store_true", help="skip running the built file once")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="route-dist-") as tmp:
        stage = os.path.join(tmp, "stage")
        versions = stage_tree(stage, tmp, args.python)
        output = os.path.abspath(args.output)
        write_zipapp(stage, output)
    if not args.no_check:
        check(output, args.python)
    with open(output, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f"build_dist: wrote {os.path.relpath(output)} ({os.path.getsize(output)} bytes, sha256 {digest}) "
          f"with {', '.join(f'{k} {v}' for k, v in versions.items())} in {time.monotonic() - started:.1f} s")
    return 0


def stage_tree(stage, tmp, python):
    """lib/cniroute + schemas + pinned wheels in `stage`, byte-compiled; returns the bundled versions."""
    package = os.path.join(stage, "cniroute")
    shutil.copytree(os.path.join(REPO, "lib", "cniroute"), package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "schemas", "_bundle.json"))
    shutil.copytree(os.path.join(REPO, "schemas"), os.path.join(package, "schemas"),
                    ignore=shutil.ignore_patterns("*~", ".*"))
    requirements = os.path.join(tmp, "requirements.txt")
    with open(requirements, "w") as f:
        f.writelines(f"{name}=={version} --hash=sha256:{digest}\n" for name, (version, digest) in PINS.items())
    # --platform any: pip accepts only pure wheels, so a compiled dependency fails the build, never slips in.
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
           "--root-user-action=ignore",
           "--no-deps", "--require-hashes", "--only-binary=:all:", "--platform", "any", "--implementation", "py",
           "--python-version", "3.9", "--target", stage, "-r", requirements]
    subprocess.run(pip, check=True, env=dict(os.environ, PIP_NO_INPUT="1"))
    for name in sorted(os.listdir(stage)):
        if name.endswith(".dist-info"):
            for junk in ("INSTALLER", "REQUESTED", "direct_url.json", "entry_points.txt"):
                path = os.path.join(stage, name, junk)
                if os.path.exists(path):
                    os.unlink(path)
    for relative in DROP:
        path = os.path.join(stage, relative)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)
    for root, _, files in os.walk(stage):
        for name in files:
            if name.endswith(DROP_SUFFIXES):
                os.unlink(os.path.join(root, name))
    for name in ("__main__.py", "_route_boot.py"):
        with open(os.path.join(stage, name), "w") as f:
            f.write(MAIN if name == "__main__.py" else BOOT)
    versions = {name: version for name, (version, _) in PINS.items()}
    probe = ("import sys, importlib.util as u; "
             "print(sys.implementation.cache_tag, sys.version.split()[0], u.MAGIC_NUMBER.hex())")
    info = subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True).stdout.split()
    bundle = {
        "route": _route_version(),
        "bundled": versions,
        "bytecode": {"cache_tag": info[0], "python": info[1], "magic": info[2]},
        "commit": _commit(),
        "builder": "tools/build_dist.py",
    }
    with open(os.path.join(package, "_bundle.json"), "w") as f:
        json.dump(bundle, f, indent=2)
        f.write("\n")
    # Legacy layout (foo.pyc beside foo.py): the only one zipimport reads. Unchecked hash: no timestamps
    # (reproducible, independent of zip times and time zones) and no source read at import.
    compile_script = (
        "import compileall, py_compile, sys\n"
        "ok = compileall.compile_dir(sys.argv[1], ddir='', legacy=True, quiet=1, workers=1,\n"
        "    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
        "sys.exit(0 if ok else 1)\n")
    subprocess.run([python, "-c", compile_script, stage], check=True)
    return versions


def write_zipapp(stage, output):
    files = []
    for root, dirs, names in os.walk(stage):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        files += [os.path.join(root, n) for n in names]
    entries = sorted(os.path.relpath(p, stage).replace(os.sep, "/") for p in files)
    section, in_section = code_section(stage, entries)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "w+b") as f:
        f.write(HEADER)
        f.write(section)
        with zipfile.ZipFile(f, "w") as z:
            for name in (e for e in entries if e not in in_section):
                info = zipfile.ZipInfo(name, ZIP_TIME)
                # Bytecode is stored: zipimport would inflate every module a call imports, ~8% of an ADD's
                # CPU. Sources (read only by another minor version of Python) and data stay deflated.
                info.compress_type = zipfile.ZIP_STORED if name.endswith(".pyc") else zipfile.ZIP_DEFLATED
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.create_system = 3  # unix, whatever builds it
                with open(os.path.join(stage, name), "rb") as src:
                    z.writestr(info, src.read(), compresslevel=9)
        seal(f)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o755)
    os.replace(tmp, output)


def seal(f):
    """Write into the code section of the build open in `f` (read and write) what _route_boot checks at start: the
    file's size, where the zip's directory starts and the CRC-32 from there to the end."""
    f.seek(0)
    data = f.read()
    end = data.rindex(b"PK\x05\x06")  # the zip's end record; the directory's length is 12 bytes into it
    directory = end - int.from_bytes(data[end + 12:end + 16], "little")
    f.seek(data.index(CODE_MARK) + SEAL_AT)
    f.write(len(data).to_bytes(8, "little") + directory.to_bytes(8, "little")
            + zlib.crc32(data[directory:]).to_bytes(4, "little"))


def code_section(stage, entries):
    """The code section (see BOOT) of the packages in CODE_SECTION: their bytecode, and the data files of
    cniroute; and the names whose bytecode it holds, which the zip then leaves out (their sources stay)."""
    modules, data, magics = {}, {}, set()
    for name in entries:
        parts = name.split("/")
        top = parts[0]
        if top not in CODE_SECTION or len(parts) == 1:
            continue
        with open(os.path.join(stage, name), "rb") as f:
            content = f.read()
        if name.endswith(".pyc"):
            package = parts[-1] == "__init__.pyc"
            module = ".".join(parts[:-1] if package else parts[:-1] + [parts[-1][:-4]])
            modules[module] = (package, content[16:])  # after the pyc header: magic, flags, hash
            magics.add(content[:4])
        elif not name.endswith(".py") and top == "cniroute":
            data[name] = content
    [magic] = magics
    table = marshal.dumps({"modules": modules, "data": data}, 2)  # version 2: no references, reproducible
    with open(os.path.join(stage, "_route_boot.pyc"), "rb") as f:
        boot = f.read()[16:]
    held = {name for name in entries if name.endswith(".pyc") and name.split("/")[0] in CODE_SECTION}
    # What seal() writes is known once the zip is written.
    section = (CODE_MARK + magic + bytes(20) + len(boot).to_bytes(4, "little") + len(table).to_bytes(8, "little")
               + zlib.crc32(boot + table).to_bytes(4, "little") + boot + table)
    if len(HEADER) + len(CODE_MARK) + 40 + len(boot) > BOOT_ROOM:
        sys.exit(f"build_dist: the launcher reads {BOOT_ROOM} bytes, which no longer hold _route_boot's bytecode")
    return section, held


def check(output, python):
    """The built file answers VERSION and validates a config with the bundled jsonschema (no ip is run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
    env["PYTHONNOUSERSITE"] = "1"

    def run(extra, stdin):
        return subprocess.run([python, output], input=stdin, capture_output=True, text=True, timeout=60,
                              env={**env, **extra})

    version = run({"CNI_COMMAND": "VERSION"}, '{"cniVersion": "1.0.0"}')
    invalid = run({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "build-check", "CNI_NETNS": "/nonexistent",
                   "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent"},
                  '{"cniVersion": "1.0.0", "name": "build-check", "type": "route", "master": 5}')
    problems = []
    if version.returncode != 0 or "supportedVersions" not in version.stdout:
        problems.append(f"VERSION: rc={version.returncode} stdout={version.stdout!r} stderr={version.stderr[-2000:]}")
    try:
        code = json.loads(invalid.stdout).get("code")
    except ValueError:
        code = None
    if code != 7:
        problems.append(f"an invalid config must give CNI error 7 (schema), got rc={invalid.returncode} "
                        f"stdout={invalid.stdout[-2000:]!r} stderr={invalid.stderr[-2000:]}")
    if any("schema.py" in p and "StopIteration" in p for p in problems):
        problems.append("lib/cniroute/schema.py finds schemas/ with os.path.isdir() beside its __file__, which is "
                        "inside the zip here: it must read them through the zip importer, its module's __loader__")
    if problems:
        sys.exit(f"build_dist: {output} is broken:\n  " + "\n  ".join(problems))


def _route_version():
    scope = {}
    with open(os.path.join(REPO, "lib", "cniroute", "__init__.py"), encoding="utf-8") as f:
        exec(compile(f.read(), "__init__.py", "exec"), scope)
    return scope["__version__"]


def _commit():
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


if __name__ == "__main__":
    sys.exit(main())
