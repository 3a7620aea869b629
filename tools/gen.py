#!/usr/bin/env python3
"""vgpu code generator: one master list in, every derived list out.

Reads spec/exports.txt (every symbol the guest libcuda.so.1 exports) and
spec/driver.spec (which of them are implemented by hand, remote or local, and the
wire operations), checks both against the CUDA headers, and writes the committed
files under gen/:

  gen/cuda_stubs.c          NOT_SUPPORTED stubs for exports that driver.spec omits
  gen/cuda_stubs_interop.c  the same for the OpenGL/EGL/VDPAU interop entry points
  gen/cuda_interop.h        declarations of those interop entry points
  gen/procaddr_table.c/.h   the cuGetProcAddress table (name, version, per-thread)
  gen/procaddr_probe.txt    expected cuGetProcAddress answers, for tests and the probe
  gen/ops.h                 X-macro of the wire operations with stable ids
  gen/exports.map           GNU ld version script exporting exactly spec/exports.txt
  gen/entry_points.h        X-macro of every export with its status

and, for the guest NVML library, from spec/nvml_exports.txt, spec/nvml.spec and
src/common/nvml_abi.h (vgpu's own declaration of the NVML ABI):

  gen/nvml_stubs.c          NOT_SUPPORTED stubs for NVML exports that nvml.spec omits
  gen/nvml_exports.map      version script exporting exactly spec/nvml_exports.txt

NVML wire operations go into the same gen/ops.h (their names must not collide with
the driver's).

Prototypes come from the headers themselves: the C preprocessor (--cc) expands
cuda.h, cudaProfiler.h, cudaGL.h, cudaEGL.h, cudaVDPAU.h and their *Typedefs.h with
__CUDA_API_VERSION_INTERNAL defined (so legacy, _v2.. and _ptds/_ptsz variants are
all declared under their own names); GL/EGL/VDPAU system headers are replaced by
empty files, so the output does not depend on which of them this machine has.

Usage: tools/gen.py [--check] [--cuda-include DIR] [--cc COMPILER]
  --check  write nothing; exit 1 naming every file under gen/ that is stale.
Python 3 standard library only.
"""

import argparse
import collections
import os
import re
import shlex
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------
# Hand-kept facts (keep these small; everything else is derived)
# ---------------------------------------------------------------------------

# cuGetProcAddress variants whose exported symbol does not follow the rule in
# derive_procaddr() (per API name, variants sorted by version: oldest -> plain
# name, next -> _v2, next -> _v3...; a _ptds/_ptsz variant -> the symbol of the
# newest plain variant at or below its version, plus that suffix).
# Key: (api name, version, "" | "_ptds" | "_ptsz") -> exported symbol, or None for a
# variant the real driver does not provide (left out of the table: SYMBOL_NOT_FOUND).
#
# The rule gives the right symbol for every other variant of cudaTypedefs.h,
# cudaProfilerTypedefs.h and the GL/EGL/VDPAU typedef headers of CUDA 13.0. Checked
# three ways: every resolved symbol is in spec/exports.txt (here); every variant's
# PFN_ typedef has the same type as the symbol's own declaration (static assertions
# in gen/procaddr_table.c); and tools/procaddr_probe.c found the real driver
# (580.159.04, H100, x86_64) answering every line of gen/procaddr_probe.txt (each
# name, flags 0/1/2, at, just below and above each variant's version) as predicted.
# Cases that look like exceptions but follow the rule:
#   cuGraphInstantiate       10000 -> cuGraphInstantiate, 11000 -> cuGraphInstantiate_v2
#                            (both the old 5-argument form; cuda.h's macro to
#                            cuGraphInstantiateWithFlags is compile-time only, and
#                            cuGraphInstantiateWithFlags is its own name at 11040)
#   cuStreamBeginCapture     10000 -> plain, 10010 -> _v2 (with mode); _ptsz likewise
#   cuStreamGetCaptureInfo   10010 / 11030 / 12030 -> plain / _v2 / _v3 (+ _ptsz)
#   cuGetProcAddress         11030 -> cuGetProcAddress, 12000 -> cuGetProcAddress_v2
#   cuDeviceGetUuid          9020 -> plain, 11040 -> _v2
#   cuCtxGetDevice, cuCtxSynchronize  13000 -> _v2 (the context-taking forms)
#   cuEventElapsedTime       12080 -> _v2
#   cuMemcpyBatchAsync, cuMemcpy3DBatchAsync  12080 -> plain, 13000 -> _v2 (+ _ptsz)
# Add an entry only with a note saying how the real driver was seen to answer.
PROCADDR_EXCEPTIONS = {
    # cudaEGLTypedefs.h declares PFN_cuEventCreateFromEGLSync_v9000, but driver
    # 580.159.04 (x86_64) neither exports cuEventCreateFromEGLSync nor resolves it
    # (SYMBOL_NOT_FOUND at every version): it is not in spec/exports.txt either.
    ("cuEventCreateFromEGLSync", 9000, ""): None,
}

# Wire op ids are crc32(name) & 0xffff. A new op that collides with an existing one
# (or hits the reserved 0 / 0xffff) gets an explicit id here; never renumber others.
OP_ID_OVERRIDES = {
}
OP_ID_RESERVED = (0x0000, 0xFFFF)

# Interop headers. For each: the real header(s) to include when the system headers
# they need exist, and stand-in typedefs for the foreign types when they do not.
# The stubs never read their arguments, so a stand-in only has to be passed the same
# way: handles are 32-bit integers or pointers, and CUeglFrame (64 bytes, 8-aligned)
# is passed in memory on x86-64 and by reference on AArch64 whatever its members.
INTEROP_GROUPS = [
    {
        "key": "GL",
        "header": "cudaGL.h",
        "typedefs": "cudaGLTypedefs.h",
        "needs": ["GL/gl.h"],
        "standins": [
            "typedef unsigned int GLuint;   /* as in GL/gl.h */",
            "typedef unsigned int GLenum;   /* as in GL/gl.h */",
            "typedef int CUGLDeviceList;    /* enum CUGLDeviceList_enum */",
        ],
        # cudaGL.h includes <GL/gl.h> itself: without it, declare the prototypes here.
        "header_includes_needs": True,
    },
    {
        "key": "EGL",
        "header": "cudaEGL.h",
        "typedefs": "cudaEGLTypedefs.h",
        "needs": ["EGL/egl.h", "EGL/eglext.h"],
        "standins": [
            "typedef void *EGLImageKHR;     /* EGL handles are pointers */",
            "typedef void *EGLStreamKHR;",
            "typedef void *EGLSyncKHR;",
            "typedef int32_t EGLint;",
            "typedef struct CUeglStreamConnection_st *CUeglStreamConnection;",
            "typedef struct vg_standin_eglframe { void *opaque[8]; } CUeglFrame; /* 64 bytes, like CUeglFrame_v1 */",
        ],
        "header_includes_needs": True,
    },
    {
        "key": "VDPAU",
        "header": "cudaVDPAU.h",
        "typedefs": "cudaVDPAUTypedefs.h",
        "needs": ["vdpau/vdpau.h"],
        "standins": [
            "typedef uint32_t VdpDevice;        /* as in vdpau/vdpau.h */",
            "typedef uint32_t VdpVideoSurface;",
            "typedef uint32_t VdpOutputSurface;",
            "typedef int VdpGetProcAddress(uint32_t device, uint32_t function_id, void **function_pointer);",
        ],
        # cudaVDPAU.h does not include vdpau.h: it is always included, after the
        # stand-ins when vdpau.h is missing, so its prototypes are always checked.
        "header_includes_needs": False,
    },
]

CORE_HEADERS = ["cuda.h", "cudaProfiler.h"]
CORE_TYPEDEFS = ["cudaTypedefs.h", "cudaProfilerTypedefs.h"]
FAKE_SYSTEM_HEADERS = ["GL/gl.h", "EGL/egl.h", "EGL/eglext.h", "vdpau/vdpau.h"]

PT_FLAG = 2  # CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
# Names the probe list expects SYMBOL_NOT_FOUND for: an invented one, symbol names
# that are not API names (cuGetProcAddress takes API names), and a variant the
# driver does not provide (PROCADDR_EXCEPTIONS).
UNKNOWN_PROBE_NAMES = ["cuVgpuNoSuchEntryPoint", "cuMemAlloc_v2", "cuMemcpyHtoD_v2_ptds",
                       "cuEventCreateFromEGLSync"]


class GenError(Exception):
    pass


def fail(msg):
    raise GenError(msg)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def read_exports(path):
    """spec/exports.txt -> sorted list of names (comments and blank lines skipped)."""
    names = []
    for no, line in enumerate(read_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not IDENT.match(line):
            fail(f"{path}:{no}: not a symbol name: {line!r}")
        names.append(line)
    if names != sorted(names):
        fail(f"{path}: names are not sorted (LC_ALL=C sort order)")
    dup = [n for n, c in collections.Counter(names).items() if c > 1]
    if dup:
        fail(f"{path}: listed twice: {', '.join(dup)}")
    return names


Spec = collections.namedtuple("Spec", "entries ops")  # entries: name -> (status, op)


def read_spec(path, exports, exports_name="spec/exports.txt"):
    """spec/driver.spec (or spec/nvml.spec) -> Spec. Format (see its header): `SYMBOL
    STATUS [OP]`, STATUS remote (OP required) or local (no OP); `op NAME` declares a
    wire op. exports_name: the export list the symbols must be in, for messages."""
    entries, ops = {}, []
    export_set = set(exports)
    errors = []
    for no, raw in enumerate(read_lines(path), 1):
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        where = f"{path}:{no}"
        if line[0] == "op":
            if len(line) != 2 or not re.match(r"^[A-Z][A-Z0-9_]*$", line[1]):
                errors.append(f"{where}: expected `op NAME` (NAME in CAPS): {raw.strip()}")
                continue
            ops.append(line[1])
            continue
        sym, rest = line[0], line[1:]
        if not IDENT.match(sym):
            errors.append(f"{where}: not a symbol name: {sym!r}")
            continue
        if not rest or rest[0] not in ("remote", "local"):
            errors.append(f"{where}: {sym}: STATUS must be remote or local")
            continue
        status, op = rest[0], (rest[1] if len(rest) > 1 else None)
        if len(rest) > 2:
            errors.append(f"{where}: {sym}: too many fields")
        if status == "remote" and op is None:
            errors.append(f"{where}: {sym}: remote needs an OP")
        if status == "local" and op is not None:
            errors.append(f"{where}: {sym}: local takes no OP (got {op})")
        if op is not None and not re.match(r"^[A-Z][A-Z0-9_]*$", op):
            errors.append(f"{where}: {sym}: OP must be CAPS: {op}")
        if sym in entries:
            errors.append(f"{where}: {sym} listed twice")
        if sym not in export_set:
            errors.append(f"{where}: {sym} is not in {exports_name}")
        entries[sym] = (status, op)
        if op is not None:
            ops.append(op)
    if errors:
        fail("\n".join(errors))
    return Spec(entries, ops)


def read_requests(path):
    """A cudart request list: `name version flags` per line."""
    out = []
    for no, line in enumerate(read_lines(path), 1):
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        if len(f) != 3:
            fail(f"{path}:{no}: expected `name version flags`")
        out.append((f[0], int(f[1]), int(f[2])))
    return out


# ---------------------------------------------------------------------------
# Header parsing (through the C preprocessor)
# ---------------------------------------------------------------------------

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9][A-Za-z0-9_.]*|\.\.\.|->|\S")


def is_word(tok):
    return bool(re.match(r"[A-Za-z0-9_]", tok))


def render(tokens):
    """Canonical C text for a token list: the same for any preprocessor's spacing."""
    out = ""
    prev = None
    for tok in tokens:
        if prev is not None:
            if prev == ",":
                out += " "
            elif is_word(prev) and (is_word(tok) or tok in ("*", "(")):
                out += " "
        out += tok
        prev = tok
    return out


def preprocess(cc, cuda_include, fake_dir, includes):
    src = "#define __CUDA_API_VERSION_INTERNAL 1\n" + "".join(f"#include <{h}>\n" for h in includes)
    cmd = shlex.split(cc) + ["-E", "-P", "-x", "c", "-std=c11", "-I", fake_dir, "-I", cuda_include, "-"]
    try:
        res = subprocess.run(cmd, input=src, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, check=False)
    except OSError as e:
        fail(f"cannot run the C preprocessor {cc!r}: {e} (use --cc)")
    if res.returncode != 0:
        fail(f"preprocessing {', '.join(includes)} failed:\n{res.stderr}")
    return res.stdout


def statements(text):
    """Top-level C statements (split at ';' and at the '}' closing a top-level block)."""
    out, cur, depth = [], [], 0
    for tok in TOKEN.findall(text):
        cur.append(tok)
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0 and cur[0] != "typedef" and "struct" not in cur[:2] \
                    and "union" not in cur[:2] and "enum" not in cur[:2]:
                out.append(cur)   # a function body
                cur = []
        elif tok == ";" and depth == 0:
            out.append(cur[:-1])
            cur = []
    return out


def matching_paren(tokens, i):
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j] == "(":
            depth += 1
        elif tokens[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    fail("unbalanced parentheses in: " + " ".join(tokens))


Proto = collections.namedtuple("Proto", "ret params source")  # rendered text


def parse_decls(text, source, name_re=r"^cu[A-Z]"):
    """Function declarations whose name matches name_re (cu*): name -> Proto."""
    decls = {}
    for st in statements(text):
        if not st or st[0] == "typedef" or "{" in st:
            continue
        for i, tok in enumerate(st):
            if re.match(name_re, tok) and i + 1 < len(st) and st[i + 1] == "(":
                end = matching_paren(st, i + 1)
                if end != len(st) - 1:
                    break
                ret = [t for t in st[:i] if t != "extern"]
                proto = Proto(render(ret), render(st[i + 2:end]) or "void", source)
                if tok in decls and decls[tok][:2] != proto[:2]:
                    fail(f"{source}: {tok} declared twice with different prototypes")
                decls[tok] = proto
                break
    return decls


PFN_NAME = re.compile(r"^PFN_(cu[A-Za-z0-9_]+?)_v([0-9]{4,5})(_ptds|_ptsz)?$")

Variant = collections.namedtuple("Variant", "api version suffix ret params pfn source")


def parse_pfns(text, source):
    """`typedef RET (*PFN_<api>_v<version>[_ptds|_ptsz])(PARAMS);` -> [Variant]."""
    out = []
    for st in statements(text):
        if len(st) < 8 or st[0] != "typedef":
            continue
        try:
            i = st.index("(")
        except ValueError:
            continue
        if st[i + 1] != "*" or st[i + 3] != ")" or st[i + 4] != "(":
            continue
        m = PFN_NAME.match(st[i + 2])
        if not m:
            continue
        end = matching_paren(st, i + 4)
        out.append(Variant(m.group(1), int(m.group(2)), m.group(3) or "", render(st[1:i]),
                           render(st[i + 5:end]) or "void", st[i + 2], source))
    return out


Headers = collections.namedtuple("Headers", "core_decls interop_decls variants cuda_version")


def read_headers(cc, cuda_include):
    for h in CORE_HEADERS + CORE_TYPEDEFS + [g["header"] for g in INTEROP_GROUPS]:
        if not os.path.exists(os.path.join(cuda_include, h)):
            fail(f"{h} not found in {cuda_include} (use --cuda-include)")
    with open(os.path.join(cuda_include, "cuda.h"), encoding="utf-8", errors="replace") as f:
        m = re.search(r"^#define CUDA_VERSION (\d+)", f.read(), re.M)
    if not m:
        fail("cuda.h: no CUDA_VERSION")
    with tempfile.TemporaryDirectory(prefix="vgpu-gen-") as fake:
        for h in FAKE_SYSTEM_HEADERS:
            os.makedirs(os.path.dirname(os.path.join(fake, h)), exist_ok=True)
            open(os.path.join(fake, h), "w").close()
        core = parse_decls(preprocess(cc, cuda_include, fake, CORE_HEADERS), "core")
        variants = parse_pfns(preprocess(cc, cuda_include, fake, CORE_TYPEDEFS), "core")
        interop = {}
        for g in INTEROP_GROUPS:
            d = parse_decls(preprocess(cc, cuda_include, fake, ["cuda.h", g["header"]]), g["key"])
            for name, p in d.items():
                if name not in core:
                    interop[name] = p
            for v in parse_pfns(preprocess(cc, cuda_include, fake, ["cuda.h", g["typedefs"]]), g["key"]):
                if not any(v.pfn == w.pfn for w in variants):
                    variants.append(v._replace(source=g["key"]))
    if len(core) < 400 or len(variants) < 400:
        fail(f"suspiciously few declarations parsed ({len(core)} functions, {len(variants)} PFN typedefs)")
    return Headers(core, interop, variants, int(m.group(1)))


# ---------------------------------------------------------------------------
# cuGetProcAddress table
# ---------------------------------------------------------------------------

Entry = collections.namedtuple("Entry", "api version per_thread symbol variant")


def derive_procaddr(variants, exports):
    """Map every PFN variant to the exported symbol that implements it."""
    by_api = collections.defaultdict(list)
    seen = {}
    for v in variants:
        key = (v.api, v.version, v.suffix)
        if key in seen:
            if seen[key][3:5] != v[3:5]:
                fail(f"{v.pfn} typedef'd twice with different types")
            continue
        seen[key] = v
        by_api[v.api].append(v)
    export_set = set(exports)
    entries, errors = [], []
    used_exceptions = set()
    for api in sorted(by_api):
        vs = by_api[api]
        plain = sorted((v for v in vs if not v.suffix), key=lambda v: v.version)
        plain_sym = [(v.version, api if i == 0 else f"{api}_v{i + 1}") for i, v in enumerate(plain)]
        for v in sorted(vs, key=lambda v: (v.suffix != "", v.version)):
            if not v.suffix:
                sym = dict(plain_sym)[v.version]
            else:
                base = [s for ver, s in plain_sym if ver <= v.version]
                sym = (base[-1] if base else api) + v.suffix
            key = (api, v.version, v.suffix)
            if key in PROCADDR_EXCEPTIONS:
                sym = PROCADDR_EXCEPTIONS[key]
                used_exceptions.add(key)
                if sym is None:
                    continue
            if sym not in export_set:
                errors.append(f"{v.pfn} resolves to {sym}, which is not in spec/exports.txt")
            entries.append(Entry(api, v.version, 1 if v.suffix else 0, sym, v))
    stale = set(PROCADDR_EXCEPTIONS) - used_exceptions
    if stale:
        errors.append(f"PROCADDR_EXCEPTIONS names variants the headers lack: {sorted(stale)}")
    if errors:
        fail("\n".join(errors))
    entries.sort(key=lambda e: (e.api.encode(), e.per_thread, e.version))
    return entries


def resolve(entries_by_api, name, version, flags):
    """Model of src/guest/cuda/procaddr.c: symbol, '-' (version not sufficient) or
    '!' (symbol not found). With the per-thread flag, a name that has per-thread
    variants resolves among those only (the real driver answers NOT_FOUND below the
    first _ptds/_ptsz version); otherwise among the plain variants."""
    es = entries_by_api.get(name)
    if not es:
        return "!"
    want_pt = 1 if (flags & PT_FLAG) and any(e.per_thread for e in es) else 0
    best = None
    for e in es:
        if e.per_thread == want_pt and e.version <= version and (best is None or e.version > best.version):
            best = e
    return best.symbol if best else "-"


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------

def header(kind, sources, what):
    """Leading comment of a generated file. kind: 'c' or 'txt'."""
    first = f"generated by tools/gen.py from {' and '.join(sources)}; do not edit."
    if kind == "c":
        body = "\n".join(" * " + l if l else " *" for l in what)
        return f"/* {first}\n *\n{body}\n */\n"
    return "".join(f"# {l}\n" if l else "#\n" for l in [first, ""] + what)


def stub_definition(name, proto):
    if proto.ret == "CUresult":
        body = f'    return vg_unsupported("{name}");'
    elif proto.ret == "void":
        body = f'    (void)vg_unsupported("{name}");'
    else:
        fail(f"{name} returns {proto.ret}: no NOT_SUPPORTED stub rule for that; "
             f"implement it by hand and list it in spec/driver.spec")
    return f"{proto.ret} {name}({proto.params})\n{{\n{body}\n}}\n"


def prototype_for(name, headers, entries):
    """The symbol's own declaration, else the PFN typedef of the variant it implements."""
    if name in headers.core_decls:
        return headers.core_decls[name]
    if name in headers.interop_decls:
        return headers.interop_decls[name]
    for e in entries:
        if e.symbol == name:
            v = e.variant
            return Proto(v.ret, v.params, v.source + ":" + v.pfn)
    fail(f"{name} (spec/exports.txt) is declared by no header and implements no PFN_ typedef")


def gen_stubs(exports, spec, headers, entries):
    core, interop = [], collections.defaultdict(list)
    notes = []
    for name in exports:
        if name in spec.entries:
            continue
        p = prototype_for(name, headers, entries)
        if ":" in p.source:
            notes.append(f"{name}: prototype from {p.source.split(':')[1]} (no header declares {name})")
        group = p.source.split(":")[0]
        (core if group == "core" else interop[group]).append(stub_definition(name, p))
    what = [
        "NOT_SUPPORTED stubs: one definition for every symbol of spec/exports.txt that",
        "spec/driver.spec does not implement. Each logs its name once and returns",
        "CUDA_ERROR_NOT_SUPPORTED (vg_unsupported). Prototypes are cuda.h's own, declared",
        "under __CUDA_API_VERSION_INTERNAL, so the compiler checks every one of them.",
    ] + notes
    c = header("c", ["spec/exports.txt", "spec/driver.spec"], what)
    c += '\n#include "guest/cuda/guest.h"\n#include <cudaProfiler.h>\n\n'
    c += '#pragma GCC diagnostic ignored "-Wunused-parameter"\n\n'
    c += "\n".join(core)
    i = header("c", ["spec/exports.txt", "spec/driver.spec"], [
        "NOT_SUPPORTED stubs for the OpenGL, EGL and VDPAU interop entry points (cudaGL.h,",
        "cudaEGL.h, cudaVDPAU.h) that spec/driver.spec does not implement. cuda_interop.h",
        "declares them with the real headers where this machine has GL/EGL/VDPAU headers and",
        "with stand-in types otherwise; the stubs never read their arguments.",
    ])
    i += '\n#include "cuda_interop.h"\n\n'
    i += '#pragma GCC diagnostic ignored "-Wunused-parameter"\n'
    for g in INTEROP_GROUPS:
        if interop[g["key"]]:
            i += f"\n/* {g['header']} */\n\n" + "\n".join(interop[g["key"]])
    return c, i


def gen_interop_header(exports, headers):
    export_set = set(exports)
    by_group = collections.defaultdict(list)
    for name in sorted(headers.interop_decls):
        if name in export_set:
            by_group[headers.interop_decls[name].source].append(name)
    out = header("c", ["spec/exports.txt"], [
        "Declarations of the OpenGL, EGL and VDPAU interop entry points the library",
        "exports, for gen/cuda_stubs_interop.c and gen/procaddr_table.c.",
        "Where the system headers a CUDA interop header needs are present, the real CUDA",
        "header is included (VG_HAVE_GL / VG_HAVE_EGL / VG_HAVE_VDPAU are then defined) and",
        "checks every definition; otherwise the foreign types get stand-ins with the same",
        "calling convention and the prototypes are declared here. Define",
        "VG_FORCE_INTEROP_STANDINS to test the stand-ins on a machine that has the headers.",
    ])
    out += "\n#ifndef VGPU_GEN_CUDA_INTEROP_H\n#define VGPU_GEN_CUDA_INTEROP_H\n\n"
    out += '#include "guest/cuda/guest.h"\n#include <stdint.h>\n\n'
    out += "#if !defined(VG_FORCE_INTEROP_STANDINS) && defined(__has_include)\n"
    for g in INTEROP_GROUPS:
        cond = " && ".join(f"__has_include(<{n}>)" for n in g["needs"])
        out += f"#if {cond}\n#define VG_HAVE_{g['key']} 1\n#endif\n"
    out += "#endif\n"
    for g in INTEROP_GROUPS:
        k = g["key"]
        names = by_group.get(k, [])
        out += f"\n/* {g['header']}: {len(names)} entry points */\n"
        if g["header_includes_needs"]:
            out += f"#ifdef VG_HAVE_{k}\n#include <{g['header']}>\n#else\n"
            out += "\n".join(g["standins"]) + "\n"
            for n in names:
                p = headers.interop_decls[n]
                out += f"{p.ret} {n}({p.params});\n"
            out += "#endif\n"
        else:
            out += f"#ifdef VG_HAVE_{k}\n" + "".join(f"#include <{n}>\n" for n in g["needs"])
            out += "#else\n" + "\n".join(g["standins"]) + "\n#endif\n"
            out += f"#include <{g['header']}>\n"
    out += "\n#endif\n"
    return out


def gen_procaddr(entries):
    h = header("c", ["spec/exports.txt", "the CUDA typedef headers"], [
        "The cuGetProcAddress table: one entry per (API name, version) variant declared",
        "by cudaTypedefs.h and the profiler/GL/EGL/VDPAU typedef headers, sorted by name",
        "(strcmp), then per_thread, then version. src/guest/cuda/procaddr.c searches it.",
    ])
    h += "\n#ifndef VGPU_GEN_PROCADDR_TABLE_H\n#define VGPU_GEN_PROCADDR_TABLE_H\n\n#include <stddef.h>\n\n"
    h += ("struct vg_procaddr_entry {\n"
          "    const char *name;         /* API name, as cuGetProcAddress is asked for it */\n"
          "    int version;              /* CUDA version (1000*major+10*minor) that introduced it */\n"
          "    unsigned char per_thread; /* 1: the _ptds/_ptsz (per-thread default stream) variant */\n"
          "    const char *symbol;       /* the exported symbol that implements it */\n"
          "    void (*fn)(void);         /* its address; cast to the variant's PFN_ type */\n"
          "};\n\n")
    h += f"#define VG_PROCADDR_TABLE_LEN {len(entries)}\n"
    h += "extern const struct vg_procaddr_entry vg_procaddr_table[VG_PROCADDR_TABLE_LEN];\n\n#endif\n"

    c = header("c", ["spec/exports.txt", "the CUDA typedef headers"], [
        "The cuGetProcAddress table (see procaddr_table.h), and a compile-time proof that",
        "each variant's PFN_ typedef has exactly the type of the symbol it resolves to.",
        f"{len(entries)} variants of {len(set(e.api for e in entries))} API names.",
    ])
    c += ('\n#include "guest/cuda/guest.h"\n#include <cudaProfiler.h>\n#include <cudaTypedefs.h>\n'
          '#include <cudaProfilerTypedefs.h>\n#include "cuda_interop.h"\n#include "procaddr_table.h"\n\n')
    c += ("#define VG_FN(f) ((void (*)(void))(f))\n\n"
          "const struct vg_procaddr_entry vg_procaddr_table[VG_PROCADDR_TABLE_LEN] = {\n")
    for e in entries:
        c += f'    {{"{e.api}", {e.version}, {e.per_thread}, "{e.symbol}", VG_FN({e.symbol})}},\n'
    c += "};\n\n"
    c += ("#define VG_SAME_TYPE(pfn, fn) \\\n"
          "    _Static_assert(__builtin_types_compatible_p(pfn, __typeof__(&fn)), #fn \" is not a \" #pfn)\n")
    groups = collections.OrderedDict([("core", [])] + [(g["key"], []) for g in INTEROP_GROUPS])
    for e in entries:
        groups[e.variant.source].append(e)
    for key, es in groups.items():
        if not es:
            continue
        if key == "core":
            c += "\n"
        else:
            g = next(g for g in INTEROP_GROUPS if g["key"] == key)
            c += f"\n#ifdef VG_HAVE_{key}\n#include <{g['typedefs']}>\n"
        c += "".join(f"VG_SAME_TYPE({e.variant.pfn}, {e.symbol});\n" for e in es)
        if key != "core":
            c += f"#endif /* VG_HAVE_{key} */\n"
    return h, c


def gen_probe_list(entries, requests, cuda_version):
    by_api = collections.defaultdict(list)
    for e in entries:
        by_api[e.api].append(e)
    lines = collections.OrderedDict()
    for api in sorted(by_api, key=lambda s: s.encode()):
        points = set([cuda_version])
        for e in by_api[api]:
            points.add(e.version)
            if e.version - 10 > 0:
                points.add(e.version - 10)
        for flags in (0, 1, 2):
            for v in sorted(points):
                lines[(api, v, flags)] = resolve(by_api, api, v, flags)
    for name, v, flags in requests:
        lines[(name, v, flags)] = resolve(by_api, name, v, flags)
    for name in UNKNOWN_PROBE_NAMES:
        if name not in by_api:
            lines[(name, cuda_version, 0)] = "!"
    out = header("txt", ["spec/exports.txt", "tests/unit/data/cudart-13.0-getprocaddress-requests.txt"], [
        "Expected cuGetProcAddress_v2 answers: `NAME VERSION FLAGS EXPECT`, EXPECT the symbol",
        "whose address must come back, `-` for VERSION_NOT_SUFFICIENT (NULL) or `!` for",
        "SYMBOL_NOT_FOUND (NULL). Covers every table name at each variant's version, just",
        "below it and at CUDA_VERSION, for flags 0, 1 and 2, plus every cudart request.",
        "tests/unit/test_procaddr.c checks the built library against it;",
        "tools/procaddr_probe.c checks the real NVIDIA driver against it.",
    ])
    out += "".join(f"{n} {v} {f} {x}\n" for (n, v, f), x in lines.items())
    return out


def gen_ops(spec, nvml_spec):
    clash = sorted(set(spec.ops) & set(nvml_spec.ops))
    bad = sorted(op for op in set(nvml_spec.ops) if not op.startswith("NVML_"))
    if clash or bad:
        fail("spec/nvml.spec: " + "; ".join(
            ([f"ops also in spec/driver.spec: {', '.join(clash)}"] if clash else []) +
            ([f"op names must start with NVML_: {', '.join(bad)}"] if bad else [])))
    ops = sorted(set(spec.ops) | set(nvml_spec.ops))
    ids, errors = {}, []
    for op in ops:
        i = OP_ID_OVERRIDES.get(op, zlib.crc32(op.encode()) & 0xFFFF)
        if i in OP_ID_RESERVED:
            errors.append(f"op {op}: id {i:#06x} is reserved; give it one in OP_ID_OVERRIDES")
        if i in ids.values():
            other = next(k for k, v in ids.items() if v == i)
            errors.append(f"op {op}: id {i:#06x} collides with {other}; give {op} one in OP_ID_OVERRIDES")
        ids[op] = i
    if errors:
        fail("\n".join(errors))
    out = header("c", ["spec/driver.spec", "spec/nvml.spec"], [
        "Every wire operation of spec/driver.spec and spec/nvml.spec (their `op NAME`",
        "lines and OP columns), sorted by name: X(NAME, ID). NVML ops start with NVML_.",
        "ID = crc32(NAME) & 0xffff unless tools/gen.py's OP_ID_OVERRIDES says otherwise:",
        "stable across builds and spec edits; 0x0000 and 0xffff are reserved.",
    ])
    out += "\n#ifndef VGPU_GEN_OPS_H\n#define VGPU_GEN_OPS_H\n\n#define VGPU_OPS(X) \\\n"
    out += "".join(f"    X({op}, {ids[op]:#06x}) \\\n" for op in ops)
    out += f"\n#define VGPU_OP_COUNT {len(ops)}\n\n#endif\n"
    return out


def gen_exports_map(exports):
    out = "/* " + f"generated by tools/gen.py from spec/exports.txt; do not edit.\n"
    out += " *\n * GNU ld version script: export exactly the symbols of spec/exports.txt. */\n{\n  global:\n"
    out += "".join(f"    {n};\n" for n in exports)
    # vgpu's own marker, so vgpud's cuda backend can refuse to load this library as "the driver".
    out += "    vgpu_guest_library_marker;\n"
    out += "  local:\n    *;\n};\n"
    return out


def gen_entry_points(exports, spec):
    counts = collections.Counter()
    rows = []
    for n in exports:
        status = spec.entries[n][0] if n in spec.entries else "unsupported"
        counts[status] += 1
        rows.append(f"    X({n}, {status}) \\\n")
    out = header("c", ["spec/exports.txt", "spec/driver.spec"], [
        "Every exported symbol with its status: X(NAME, STATUS), STATUS one of remote",
        "(forwarded to vgpud), local (answered in the guest) or unsupported (generated",
        "stub returning CUDA_ERROR_NOT_SUPPORTED). For counting and for tests.",
    ])
    out += "\n#ifndef VGPU_GEN_ENTRY_POINTS_H\n#define VGPU_GEN_ENTRY_POINTS_H\n\n"
    out += "#define VGPU_ENTRY_POINTS(X) \\\n" + "".join(rows) + "\n"
    out += f"#define VGPU_ENTRY_POINT_COUNT {len(exports)}\n"
    for s in ("remote", "local", "unsupported"):
        out += f"#define VGPU_ENTRY_POINTS_{s.upper()} {counts[s]}\n"
    out += "\n#endif\n"
    return out, counts



# ---------------------------------------------------------------------------
# NVML (the guest libnvidia-ml.so.1)
# ---------------------------------------------------------------------------

NVML_ABI_HEADER = "src/common/nvml_abi.h"


def read_nvml_header(cc):
    """src/common/nvml_abi.h through the preprocessor -> {name: Proto} of nvml*."""
    path = os.path.join(ROOT, NVML_ABI_HEADER)
    if not os.path.exists(path):
        fail(f"{NVML_ABI_HEADER} not found")
    cmd = shlex.split(cc) + ["-E", "-P", "-x", "c", "-std=c11", "-I", os.path.join(ROOT, "src"), "-"]
    try:
        res = subprocess.run(cmd, input='#include "common/nvml_abi.h"\n', stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, check=False)
    except OSError as e:
        fail(f"cannot run the C preprocessor {cc!r}: {e} (use --cc)")
    if res.returncode != 0:
        fail(f"preprocessing {NVML_ABI_HEADER} failed:\n{res.stderr}")
    decls = parse_decls(res.stdout, "nvml", name_re=r"^nvml[A-Z]")
    if len(decls) < 300:
        fail(f"{NVML_ABI_HEADER}: suspiciously few declarations parsed ({len(decls)})")
    return decls


def split_params(params):
    """A rendered parameter list -> the token list of each parameter ([] for void)."""
    if params == "void":
        return []
    out, cur, depth = [], [], 0
    for tok in TOKEN.findall(params):
        if tok == "," and depth == 0:
            out.append(cur)
            cur = []
            continue
        depth += tok == "("
        depth -= tok == ")"
        cur.append(tok)
    out.append(cur)
    return out


def nvml_stub_definition(name, proto):
    """The header declares parameter types only: name them a0, a1, ... here."""
    if proto.ret != "nvmlReturn_t":
        fail(f"{name} returns {proto.ret}: no NOT_SUPPORTED stub rule for that; "
             f"implement it by hand and list it in spec/nvml.spec")
    params = []
    for i, toks in enumerate(split_params(proto.params)):
        if "(" in toks or "[" in toks or "..." in toks:
            fail(f"{name}: parameter {i} ({render(toks)}) is not a plain type; the stub rule cannot name it")
        params.append(render(toks + [f"a{i}"]))
    return (f"nvmlReturn_t {name}({', '.join(params) or 'void'})\n{{\n"
            f"    return vgn_unsupported(\"{name}\");\n}}\n")


def gen_nvml_stubs(exports, spec, decls):
    missing = [n for n in exports if n not in decls]
    if missing:
        fail(f"{NVML_ABI_HEADER} declares no prototype for: {', '.join(missing)}")
    extra = sorted(set(decls) - set(exports))
    if extra:
        fail(f"{NVML_ABI_HEADER} declares functions spec/nvml_exports.txt lacks: {', '.join(extra)}")
    stubs = [nvml_stub_definition(n, decls[n]) for n in exports if n not in spec.entries]
    out = header("c", ["spec/nvml_exports.txt", "spec/nvml.spec"], [
        "NOT_SUPPORTED stubs of the guest libnvidia-ml.so.1: one definition for every",
        "symbol of spec/nvml_exports.txt that spec/nvml.spec does not implement. Each",
        "logs its name once and returns NVML_ERROR_NOT_SUPPORTED (vgn_unsupported).",
        f"Prototypes are {NVML_ABI_HEADER}'s, which this file includes, so the compiler",
        f"checks every definition against them. {len(stubs)} stubs.",
    ])
    out += '\n#include "common/nvml_abi.h"\n#include "guest/nvml/nvml_guest.h"\n\n'
    out += '#pragma GCC diagnostic ignored "-Wunused-parameter"\n\n'
    out += "\n".join(stubs)
    return out, len(stubs)


def gen_nvml_exports_map(exports):
    out = "/* generated by tools/gen.py from spec/nvml_exports.txt; do not edit.\n"
    out += " *\n * GNU ld version script of the guest libnvidia-ml.so.1: export exactly the\n"
    out += " * symbols of spec/nvml_exports.txt. */\n{\n  global:\n"
    out += "".join(f"    {n};\n" for n in exports)
    # vgpu's marker, so vgpud's cuda backend can refuse to load this library as NVIDIA's NVML.
    out += "    vgpu_guest_library_marker;\n"
    # vgpu's own query for `vgpu smi`: a client's tenant (NVML has no such notion).
    out += "    vgpu_nvml_process_tenant;\n"
    out += "  local:\n    *;\n};\n"
    return out


# ---------------------------------------------------------------------------

def generate(args):
    exports = read_exports(os.path.join(ROOT, "spec/exports.txt"))
    spec = read_spec(os.path.join(ROOT, "spec/driver.spec"), exports)
    requests = read_requests(os.path.join(ROOT, "tests/unit/data/cudart-13.0-getprocaddress-requests.txt"))
    headers = read_headers(args.cc, args.cuda_include)
    nvml_exports = read_exports(os.path.join(ROOT, "spec/nvml_exports.txt"))
    nvml_spec = read_spec(os.path.join(ROOT, "spec/nvml.spec"), nvml_exports, "spec/nvml_exports.txt")
    nvml_decls = read_nvml_header(args.cc)

    export_set = set(exports)
    declared = set(headers.core_decls) | set(headers.interop_decls)
    entries = derive_procaddr(headers.variants, exports)
    by_api = collections.defaultdict(list)
    for e in entries:
        by_api[e.api].append(e)
    bad = [f"{n} {v} {f} -> {resolve(by_api, n, v, f)}" for n, v, f in requests
           if resolve(by_api, n, v, f) in ("-", "!")]
    if bad:
        fail("cudart requests that the table does not resolve:\n  " + "\n  ".join(bad))

    stubs, stubs_interop = gen_stubs(exports, spec, headers, entries)
    table_h, table_c = gen_procaddr(entries)
    entry_points, counts = gen_entry_points(exports, spec)
    nvml_stubs, nvml_unsupported = gen_nvml_stubs(nvml_exports, nvml_spec, nvml_decls)
    files = collections.OrderedDict([
        ("gen/cuda_stubs.c", stubs),
        ("gen/cuda_stubs_interop.c", stubs_interop),
        ("gen/cuda_interop.h", gen_interop_header(exports, headers)),
        ("gen/procaddr_table.h", table_h),
        ("gen/procaddr_table.c", table_c),
        ("gen/procaddr_probe.txt", gen_probe_list(entries, requests, headers.cuda_version)),
        ("gen/ops.h", gen_ops(spec, nvml_spec)),
        ("gen/exports.map", gen_exports_map(exports)),
        ("gen/entry_points.h", entry_points),
        ("gen/nvml_stubs.c", nvml_stubs),
        ("gen/nvml_exports.map", gen_nvml_exports_map(nvml_exports)),
    ])
    info = {
        "exports": len(exports),
        "counts": counts,
        "variants": len(entries),
        "api_names": len(by_api),
        "ops": len(set(spec.ops) | set(nvml_spec.ops)),
        "nvml": (len(nvml_exports), sum(1 for st, _ in nvml_spec.entries.values() if st == "remote"),
                 sum(1 for st, _ in nvml_spec.entries.values() if st == "local"), nvml_unsupported),
        "undeclared_in_headers": sorted(export_set - declared),
        "declared_not_exported": sorted(declared - export_set),
        "not_in_procaddr": sorted(export_set - set(e.symbol for e in entries)),
    }
    return files, info


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file under gen/ is stale")
    ap.add_argument("--cuda-include", default=os.environ.get("CUDA_INCLUDE", "/usr/local/cuda/include"))
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"), help="C compiler used as preprocessor")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    try:
        files, info = generate(args)
    except GenError as e:
        print(f"gen.py: error: {e}", file=sys.stderr)
        return 2
    stale = []
    for rel, text in files.items():
        path = os.path.join(ROOT, rel)
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current == text:
            continue
        stale.append(rel)
        if not args.check:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    c = info["counts"]
    if args.verbose or not args.check:
        print(f"gen.py: {info['exports']} exports ({c['remote']} remote, {c['local']} local, "
              f"{c['unsupported']} unsupported), {info['variants']} cuGetProcAddress variants of "
              f"{info['api_names']} names, {info['ops']} wire ops")
        n = info["nvml"]
        print(f"gen.py: NVML: {n[0]} exports ({n[1]} remote, {n[2]} local, {n[3]} unsupported)")
        if args.verbose:
            for k in ("undeclared_in_headers", "declared_not_exported", "not_in_procaddr"):
                print(f"  {k} ({len(info[k])}): {' '.join(info[k])}")
    if args.check:
        for rel in stale:
            print(f"gen.py --check: {rel} is stale; run python3 tools/gen.py and commit the result",
                  file=sys.stderr)
        return 1 if stale else 0
    for rel in stale:
        print(f"gen.py: wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
