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

# What a CNI call imports, as bytecode in a section of its own between the header and the zip (see BOOT), whose
# layout is:
#   CODE_MARK; the bytecode's magic number, 4 bytes; the file's size, 8, and CRC-32, 4 (the seal: seal() writes
#   them once the zip is written; the CRC covers every byte of the file but its own 4); the length of
#   _route_boot's bytecode, 4, and of the table, 8; _route_boot's marshalled bytecode; the table.
CODE_SECTION = ("cniroute", "sh")
CODE_MARK = b"#route-code\n"
SEAL_AT = len(CODE_MARK) + 4  # where the section holds the file's size and CRC-32

# What starts every call, in Python 3.4's syntax (an old python3 must get to cli's version check). The header's
# shell line runs python3 -c WRAPPER (WRAPPER is __main__.py as well, for `python3 dist/route`), which reads the
# whole file and compiles and runs the launcher's body from it: the header's lines after the shell line, which
# the shell never reads. Before any other byte of the file runs, the body checks the file's size (cut short, or
# bytes appended) and CRC-32 (which tells every damage of up to 4 bytes in a row): damage anywhere, the header
# included, is answered before it runs, as the plugin answers: CNI error JSON on stdout, code DamagedBuild.code
# (ANSWER: without json, whose import of re costs more than python3's own start). Then it runs _route_boot from
# its bytecode in the code section (importing it from the zip would read the zip's directory: ~1.5 ms of CPU), or
# from the zip for another Python, and hands it the open file and its bytes.
# The answer is there twice, so that the copy that answers is never the damaged one: the wrapper's answers what
# the body raises (its own damage too: what breaks its syntax is a SyntaxError of compile()); the body's answers
# when the check finds the shell line or the wrapper damaged, which it tells by their own CRC-32. Unanswered is
# only damage that keeps python3 from running the wrapper at all (its syntax, bytes that are not UTF-8): python3
# then fails with status 1.
ANSWER = r'''import os, sys
why = "%s is damaged or cut short (%s: %s): install it again" % ((sys.argv + ["route"])[0], type(e).__name__, e)
why = "".join("\\u%04x" % ord(c) if c < " " or c in "\\\"" or "\ud800" <= c <= "\udfff" else c for c in why)  # JSON
os.write(1, ("""{"cniVersion": SUPPORTED, "code": CODE, "msg": "the plugin file cannot run", "details": "%s"}\n"""
             % why).encode())
os._exit(1)'''.replace("SUPPORTED", json.dumps(SUPPORTED_VERSIONS[-1])).replace("CODE", str(DamagedBuild.code))
BODY_START, BODY_END = b"\n#{\n", b"\n#}\n"  # the body's first and last lines (the shell line ends before)


def _literal(data):
    return repr(data).replace("'", '"')  # within the shell's single quotes


WRAPPER = """try:
    import os, sys
    if sys.argv[0] == "-c":  # the header: argv as `python3 FILE ARGS` has it
        del sys.argv[0]
    fd = os.open(sys.argv[0], os.O_RDONLY)
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    body = data[:data.index(END)]  # its first line is looked for before its last only: the zip may hold it too
    exec(compile(body[body.index(START):], "launcher", "exec"))
except Exception as e:
    ANSWER
run()
""".replace("ANSWER", ANSWER.replace("\n", "\n    ")).replace("START", _literal(BODY_START)) \
    .replace("END", _literal(BODY_END))
BODY = """#{
del sys.path[0]  # the current directory (-c) or the zip: no import searches either before prepare()
import marshal, zlib
whole, at = memoryview(data), data.index(MARK) + len(MARK)
e = None
if int.from_bytes(data[at + 4:at + 12], "little") != len(data):
    e = ValueError("%d bytes, built with %d" % (len(data), int.from_bytes(data[at + 4:at + 12], "little")))
elif zlib.crc32(whole[at + 16:], zlib.crc32(whole[:at + 12])) != int.from_bytes(data[at + 12:at + 16], "little"):
    e = ValueError("its CRC-32 differs from the one it was built with")
if e is not None and zlib.crc32(whole[:data.index(START)]) != SHELL_LINE_CRC:
    ANSWER
if e is not None:
    raise e
if data[at:at + 4] == getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", None):
    boot = sys.modules["_route_boot"] = type(sys)("_route_boot")  # its bytecode, from the code section
    exec(marshal.loads(whole[at + 28:at + 28 + int.from_bytes(data[at + 16:at + 20], "little")]), vars(boot))
else:  # bytecode for another Python: the source, from the zip
    sys.path.insert(0, sys.argv[0])
    import _route_boot as boot
    del sys.path[0]
run = boot.start(sys.argv[0], fd, data)
#}
""".replace("ANSWER", ANSWER.replace("\n", "\n    ")).replace("MARK", _literal(CODE_MARK)) \
    .replace("START", _literal(BODY_START))


def header(wrapper, body):
    """The shell line, which runs PYTHON_LAUNCH (python3 found on the runtime's PATH) -c `wrapper` with this file,
    then `body`. `#!/usr/bin/env python3` could not pass options portably (`env -S` is GNU's). The line fails
    closed: a damaged command could make python3 print its version or help, or run stdin as its script, and exit
    0, so it is one word list, run only as built (a separator put into `exec python3 -S -E -c` runs no python3 at
    all; its name is no single byte away from $0, which would run this file again); else the shell answers,
    and never reads on."""
    answer = json.dumps({"cniVersion": SUPPORTED_VERSIONS[-1], "code": DamagedBuild.code,
                         "msg": "the plugin file cannot run",
                         "details": "%s is damaged (its header): install it again"}, separators=(",", ":"))
    assert "'" not in wrapper + answer  # quoted for the shell
    return (f"#!/bin/sh\nd() {{ printf '{answer}\\n' \"$0\"; exit 1; }}; launch='{PYTHON_LAUNCH} -c'; "
            f"case $launch in '{PYTHON_LAUNCH} -c') $launch '{wrapper}' \"$0\" \"$@\";; esac; d\n{body}").encode()


LAUNCHER = WRAPPER
_SHELL_LINE = header(WRAPPER, BODY).split(BODY_START)[0]  # all of the header but the body, which holds its CRC-32
HEADER = header(WRAPPER, BODY.replace("SHELL_LINE_CRC", f"{zlib.crc32(_SHELL_LINE):#010x}"))


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

start(archive, fd, data): prepare(archive, fd, data), then the plugin's entry (cniroute.cli.run), with the
collector off. The launcher (LAUNCHER in tools/build_dist.py) has checked the file's size and checksum before.

prepare(archive=None, fd=None, data=None):
  * sys.path becomes the interpreter's standard library + [the archive]: the node's site-packages, user site
    and PYTHONPATH cannot shadow or add to what is bundled (a compiled pvectorc from the node's pyrsistent,
    another jsonschema, ...). The archive comes last, so that an import of the standard library never
    searches the zip (zipimport would read its directory once more, for the pinned path).
  * pyrsistent's C extension is blocked: its pure-Python vector is what runs.
  * the archive is opened once (by the launcher, which checked what it read: `fd`, `data`) and imported from
    through /proc/self/fd/N, so a later import (jsonschema, sh and the person commands are imported lazily)
    reads this very file even if `route install` renamed a new build over the path meanwhile; zipimport
    reopens the archive by name at every import.
  * the code section between the header and the zip (its layout: CODE_MARK in tools/build_dist.py) holds
    this module's marshalled bytecode, which the launcher runs, then the table, a marshalled
    {"modules": {name: (is package, code)}, "data": {path in the zip: bytes}}: what a CNI call imports,
    cniroute and sh, served by Bundled from the bytes the launcher read, a dict lookup and an exec where
    zipimport would search the zip's directory and reopen the file for each module (a tenth of an ADD's CPU).
    Bytecode for another Python (another magic number) is not used: zipimport then compiles their sources
    from the zip, as it does for every other package.
  * Python 3.9: importlib.resources.files() of a package in a zip is a zipfile.Path, whose joinpath()
    takes one part until 3.10; jsonschema 4.17.3 passes two (its vocabularies). Given 3.10's signature.
Like the start of cniroute.cli, this runs on any python3 (Python 3.4's syntax, nothing newer called), so that a
python3 too old for the plugin gets to cli's version check and answers code 106, not a traceback.
"""
import gc
import marshal
import os
import sys

ARCHIVE = None  # the archive as started (sys.argv[0] / sys.path[0]), before pinning
CODE_MARK = CODE_MARK_VALUE


def start(archive, fd, data):
    """What the launcher runs, with the file it checked (open as `fd`, read as `data`): the plugin's entry point,
    ready to call."""
    gc.disable()  # a call lives ~40 ms and leaves little cyclic garbage; the collector's passes cost 4% of an ADD
    prepare(archive, fd, data)
    from cniroute.cli import run

    return run


def prepare(archive=None, fd=None, data=None):
    """`archive`: the file, when it is not sys.path[0] (the launcher takes that off first); `fd` and `data`: the
    file open and read, when the launcher has (else opened and read here)."""
    global ARCHIVE
    archive = ARCHIVE = os.path.abspath(sys.path.pop(0) if archive is None else archive)
    prefixes = tuple(os.path.join(p, "") for p in {sys.base_prefix, sys.base_exec_prefix})
    stdlib = [p for p in sys.path
              if p.startswith(prefixes) and not {"site-packages", "dist-packages"} & set(p.split(os.sep))]
    try:
        if fd is None:
            fd = os.open(archive, os.O_RDONLY | os.O_CLOEXEC)
        pinned = "/proc/self/fd/%d" % fd
        if not os.path.samestat(os.stat(pinned), os.fstat(fd)):
            raise OSError("no /proc")
    except OSError:
        pinned = archive
    sys.path[:] = stdlib + [pinned]
    if data is None and fd is not None:
        data = os.pread(fd, os.fstat(fd).st_size, 0)
    table = _code_section(data) if data is not None else None
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


def _code_section(data):
    """The code section's table, or None: no section, or bytecode for another Python."""
    start = data.find(CODE_MARK)
    if start < 0:
        return None
    start += len(CODE_MARK)
    # importlib.util's, without importing it (Python 3.4 has no _frozen_importlib_external: no bytecode for it)
    if data[start:start + 4] != getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", None):
        return None
    table = start + 28 + _number(data, start + 16, 4)
    return marshal.loads(memoryview(data)[table:table + _number(data, start + 20, 8)])


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
    """Write into the code section of the build open in `f` (read and write) what the launcher checks before any
    of the file runs: the file's size, and the CRC-32 of every byte but the CRC's own four."""
    f.seek(0)
    data = bytearray(f.read())
    at = data.index(CODE_MARK) + SEAL_AT
    data[at:at + 8] = len(data).to_bytes(8, "little")
    crc = zlib.crc32(data[at + 12:], zlib.crc32(data[:at + 8]))
    f.seek(at)
    f.write(data[at:at + 8] + crc.to_bytes(4, "little"))


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
    section = (CODE_MARK + magic + bytes(12) + len(boot).to_bytes(4, "little") + len(table).to_bytes(8, "little")
               + boot + table)
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
