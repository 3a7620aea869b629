#!/usr/bin/env python3
"""GPU suite: framework workloads, run natively and through vgpu by tests/gpu/run.

  workloads.py list               names of the workloads, one per line
  workloads.py run NAME           run one workload in this process and print one JSON
                                  object: {"workload", "status": ok|fail|skip, "detail",
                                  "values": {name: number or list of numbers}}
  workloads.py compare A.json B.json
                                  compare a native result with a vgpu result: exit 0 and
                                  print "match" when both are ok and every value agrees
                                  within the workload's tolerance
  workloads.py selftest           check the comparison logic (needs no GPU; run by CI)

Each workload checks itself against a CPU reference (status fail when it disagrees) and
reports values that are deterministic on one GPU, so a native run and a vgpu run on the
same machine must agree: exactly for elementwise work, within a small tolerance where
reductions or library heuristics may order floating-point sums differently.
Nothing here knows about vgpu: the same process runs on the real driver or on vgpu's
libcuda.so.1, whichever `vgpu run` (LD_LIBRARY_PATH) makes it load.
"""
import json
import math
import os
import sys

# Deterministic cuBLAS workspaces for torch.use_deterministic_algorithms (set before torch loads).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

WORKLOADS = {}


def workload(name, rtol=1e-5, atol=1e-6, needs="torch"):
    def register(fn):
        WORKLOADS[name] = {"fn": fn, "rtol": rtol, "atol": atol, "needs": needs}
        return fn
    return register


class Skip(Exception):
    pass


def need(module):
    try:
        return __import__(module)
    except Exception as e:  # ImportError, or a broken install
        raise Skip(f"{module} not importable: {e}")


def torch_cuda():
    torch = need("torch")
    if not torch.cuda.is_available():
        raise RuntimeError("torch.cuda.is_available() is False")
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def flat(t):
    return [float(x) for x in t.detach().double().cpu().flatten().tolist()]


def close(a, b, rtol, atol):
    return abs(a - b) <= atol + rtol * abs(b)


# ---------------------------------------------------------------------------------------
# PyTorch


@workload("torch.device", needs="torch")
def w_torch_device(v):
    torch = torch_cuda()
    p = torch.cuda.get_device_properties(0)
    v["device_count"] = torch.cuda.device_count()
    v["capability"] = [p.major, p.minor]
    v["multi_processor_count"] = p.multi_processor_count
    v["total_memory"] = p.total_memory
    free, total = torch.cuda.mem_get_info()
    v["mem_get_info_total"] = total
    return free > 0 and total == p.total_memory


@workload("torch.tensor_ops", rtol=1e-6, atol=1e-6)
def w_torch_tensor_ops(v):
    torch = torch_cuda()
    g = torch.Generator(device="cpu").manual_seed(1)
    a_cpu = torch.randn(1000, 257, generator=g)
    b_cpu = torch.randn(1000, 257, generator=g)
    a, b = a_cpu.cuda(), b_cpu.cuda()
    out = {
        "add": a + b, "mul": a * b, "exp": torch.exp(a / 4), "where": torch.where(a > 0, a, b),
        "softmax": torch.softmax(a, dim=1), "sort": torch.sort(a[:, 0])[0], "cat": torch.cat([a[:3], b[:3]]),
        "index": a[torch.arange(0, 1000, 7, device="cuda")], "cumsum": torch.cumsum(a[:, 1], 0),
    }
    ok = True
    for name, t in out.items():
        ref = {"add": a_cpu + b_cpu, "mul": a_cpu * b_cpu, "exp": torch.exp(a_cpu / 4),
               "where": torch.where(a_cpu > 0, a_cpu, b_cpu), "softmax": torch.softmax(a_cpu, dim=1),
               "sort": torch.sort(a_cpu[:, 0])[0], "cat": torch.cat([a_cpu[:3], b_cpu[:3]]),
               "index": a_cpu[torch.arange(0, 1000, 7)], "cumsum": torch.cumsum(a_cpu[:, 1], 0)}[name]
        ok &= torch.allclose(t.cpu(), ref, rtol=1e-4, atol=1e-4)
        v[name + ".sum"] = float(t.double().sum())
    # pinned host memory and non-blocking copies on a side stream
    pinned = torch.empty(4096, pin_memory=True)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        d = (a.flatten()[:4096] * 2).contiguous()
        pinned.copy_(d, non_blocking=True)
    s.synchronize()
    ok &= torch.equal(pinned, (a_cpu.flatten()[:4096] * 2))
    v["pinned.sum"] = float(pinned.double().sum())
    v["allocated_after"] = int(torch.cuda.memory_allocated() > 0)
    return ok


@workload("torch.matmul", rtol=1e-4, atol=1e-4)
def w_torch_matmul(v):
    torch = torch_cuda()
    g = torch.Generator(device="cpu").manual_seed(2)
    a = torch.randn(512, 384, generator=g, dtype=torch.float64)
    b = torch.randn(384, 256, generator=g, dtype=torch.float64)
    ref = a @ b
    ok = True
    for dt, tol in ((torch.float32, 1e-3), (torch.float16, 5e-2), (torch.bfloat16, 3e-1)):
        got = (a.to(dt).cuda() @ b.to(dt).cuda()).double().cpu()
        err = float((got - ref).abs().max())
        ok &= err < tol * math.sqrt(384)
        v[f"{dt}".replace("torch.", "") + ".sum"] = float(got.sum())
    batched_b = b[:, :64].reshape(384, 4, 16).permute(1, 0, 2)  # (4, 384, 16)
    bmm = torch.bmm(a[:256].reshape(4, 64, 384).float().cuda(), batched_b.float().cuda())
    v["bmm.sum"] = float(bmm.double().sum())
    return ok


@workload("torch.transformer_train", rtol=1e-3, atol=1e-4)
def w_torch_transformer(v):
    torch = torch_cuda()
    torch.use_deterministic_algorithms(True, warn_only=True)
    nn = torch.nn

    def build():
        torch.manual_seed(3)
        layer = nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, dropout=0.0, batch_first=True)
        return nn.Sequential(nn.Embedding(100, 64), nn.TransformerEncoder(layer, num_layers=2), nn.Linear(64, 100))

    g = torch.Generator(device="cpu").manual_seed(4)
    tokens = torch.randint(0, 100, (8, 32), generator=g)
    targets = torch.roll(tokens, -1, dims=1)

    def train(device, steps=12):
        model = build().to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        x, y = tokens.to(device), targets.to(device)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x).reshape(-1, 100), y.reshape(-1))
            loss.backward()
            opt.step()
            losses.append(float(loss))
        return losses

    gpu = train("cuda")
    cpu = train("cpu")
    v["losses"] = gpu
    # the GPU and the CPU differ in summation order: same trajectory within a loose bound
    return all(close(a, b, 2e-2, 1e-3) for a, b in zip(gpu, cpu)) and gpu[-1] < gpu[0]


@workload("torch.cuda_graphs", rtol=1e-5, atol=1e-5)
def w_torch_graphs(v):
    torch = torch_cuda()
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 32)).cuda()
    static_in = torch.zeros(16, 64, device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up on a side stream, as PyTorch's docs ask
        for _ in range(3):
            model(static_in)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_out = model(static_in)
    ok = True
    sums = []
    g = torch.Generator(device="cpu").manual_seed(5)
    for _ in range(4):
        x = torch.randn(16, 64, generator=g)
        static_in.copy_(x)
        graph.replay()
        torch.cuda.synchronize()
        with torch.no_grad():
            eager = model(x.cuda())
        ok &= torch.allclose(static_out, eager, rtol=1e-5, atol=1e-5)
        sums.append(float(static_out.double().sum()))
    v["replay_sums"] = sums
    return ok


@workload("torch.cudnn_conv", rtol=1e-4, atol=1e-4)
def w_torch_conv(v):
    torch = torch_cuda()
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    ok = torch.backends.cudnn.is_available()
    v["cudnn_version"] = torch.backends.cudnn.version() or 0
    g = torch.Generator(device="cpu").manual_seed(6)
    x_cpu = torch.randn(4, 3, 32, 32, generator=g, requires_grad=True)
    conv_cpu = torch.nn.Conv2d(3, 16, 3, padding=1)
    torch.nn.init.normal_(conv_cpu.weight, generator=g)
    conv = torch.nn.Conv2d(3, 16, 3, padding=1).cuda()
    conv.load_state_dict(conv_cpu.state_dict())
    x = x_cpu.detach().cuda().requires_grad_(True)
    y = conv(x)
    y.square().mean().backward()
    y_cpu = conv_cpu(x_cpu)
    y_cpu.square().mean().backward()
    ok &= torch.allclose(y.cpu(), y_cpu, rtol=1e-3, atol=1e-3)
    ok &= torch.allclose(x.grad.cpu(), x_cpu.grad, rtol=1e-3, atol=1e-4)
    ok &= torch.allclose(conv.weight.grad.cpu(), conv_cpu.weight.grad, rtol=1e-3, atol=1e-3)
    v["y.sum"] = float(y.double().sum())
    v["dx.sum"] = float(x.grad.double().sum())
    v["dw.sum"] = float(conv.weight.grad.double().sum())
    return ok


# ---------------------------------------------------------------------------------------
# CuPy


@workload("cupy.kernels", rtol=1e-6, atol=1e-6, needs="cupy")
def w_cupy(v):
    cp = need("cupy")
    np = need("numpy")
    rs = np.random.RandomState(7)
    a_h = rs.standard_normal(1 << 16).astype(np.float32)
    b_h = rs.standard_normal(1 << 16).astype(np.float32)
    a, b = cp.asarray(a_h), cp.asarray(b_h)
    axpb = cp.ElementwiseKernel("float32 x, float32 y, float32 k", "float32 z", "z = k * x + y", "vgpu_axpb")
    z = axpb(a, b, cp.float32(3))
    sumsq = cp.ReductionKernel("float32 x", "float64 y", "(double)x * x", "a + b", "y = a", "0", "vgpu_sumsq")
    s = sumsq(a)
    raw = cp.RawKernel(r'''
extern "C" __global__ void vgpu_scale(float *p, float f, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) p[i] *= f;
}''', "vgpu_scale")
    c = a.copy()
    raw(((c.size + 255) // 256,), (256,), (c, cp.float32(0.5), cp.int32(c.size)))
    cp.cuda.runtime.deviceSynchronize()
    ok = np.allclose(cp.asnumpy(z), 3 * a_h + b_h, rtol=1e-6)
    ok &= math.isclose(float(s), float((a_h.astype(np.float64) ** 2).sum()), rel_tol=1e-9)
    ok &= np.array_equal(cp.asnumpy(c), a_h * np.float32(0.5))
    ok &= math.isclose(float(cp.sum(a)), float(a_h.sum()), rel_tol=1e-4, abs_tol=1e-3)
    ok &= int(cp.argmax(a)) == int(a_h.argmax())
    v["axpb.sum"] = float(z.astype(cp.float64).sum())
    v["sumsq"] = float(s)
    v["scale.sum"] = float(c.astype(cp.float64).sum())
    v["argmax"] = int(cp.argmax(a))
    return bool(ok)


# ---------------------------------------------------------------------------------------
# Triton


@workload("triton.kernels", rtol=1e-6, atol=1e-6, needs="triton")
def w_triton(v):
    torch = torch_cuda()
    triton = need("triton")
    tl = need("triton.language")

    @triton.jit
    def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        pid = tl.program_id(axis=0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)

    @triton.jit
    def softmax_kernel(out_ptr, in_ptr, stride, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(in_ptr + row * stride + cols, mask=cols < n_cols, other=-float("inf"))
        x = x - tl.max(x, axis=0)
        e = tl.exp(x)
        tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < n_cols)

    g = torch.Generator(device="cpu").manual_seed(8)
    x_cpu, y_cpu = torch.randn(98432, generator=g), torch.randn(98432, generator=g)
    x, y = x_cpu.cuda(), y_cpu.cuda()
    out = torch.empty_like(x)
    add_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, out, x.numel(), BLOCK=1024)
    m_cpu = torch.randn(64, 200, generator=g)
    m = m_cpu.cuda()
    sm = torch.empty_like(m)
    softmax_kernel[(64,)](sm, m, m.stride(0), 200, BLOCK=256)
    torch.cuda.synchronize()
    ok = torch.equal(out.cpu(), x_cpu + y_cpu)
    ok &= torch.allclose(sm.cpu(), torch.softmax(m_cpu, dim=1), rtol=1e-5, atol=1e-6)
    v["add.sum"] = float(out.double().sum())
    v["softmax.sum"] = float(sm.double().sum())
    v["softmax.row0"] = flat(sm[0, :8])
    return ok


# ---------------------------------------------------------------------------------------
# driver


def run(name):
    w = WORKLOADS[name]
    res = {"workload": name, "status": "ok", "detail": "", "values": {}}
    try:
        if not w["fn"](res["values"]):
            res["status"] = "fail"
            res["detail"] = "disagrees with the CPU reference"
    except Skip as e:
        res["status"], res["detail"] = "skip", str(e)
    except Exception as e:  # report, don't crash: the table shows it
        res["status"], res["detail"] = "fail", f"{type(e).__name__}: {e}"
    return res


def values_match(a, b, rtol, atol):
    """Why a and b differ, or None when they agree (numbers, or lists of numbers)."""
    if set(a) != set(b):
        return f"different values: {sorted(set(a) ^ set(b))}"
    for k in sorted(a):
        x, y = a[k], b[k]
        xs, ys = (x, y) if isinstance(x, list) else ([x], [y])
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
            return f"{k}: {x!r} vs {y!r}"
        for p, q in zip(xs, ys):
            if isinstance(p, list) or isinstance(q, list):
                if p != q:
                    return f"{k}: {x!r} vs {y!r}"
            elif not close(float(p), float(q), rtol, atol):
                return f"{k}: {p!r} vs {q!r}"
    return None


def compare(native, vgpu):
    """(verdict, reason): verdict is match, skip or differ."""
    if native.get("status") == "skip" or vgpu.get("status") == "skip":
        return "skip", native.get("detail") or vgpu.get("detail")
    if native.get("status") != "ok":
        return "differ", f"native: {native.get('status')} {native.get('detail')}"
    if vgpu.get("status") != "ok":
        return "differ", f"vgpu: {vgpu.get('status')} {vgpu.get('detail')}"
    w = WORKLOADS.get(native.get("workload"), {"rtol": 0, "atol": 0})
    why = values_match(native["values"], vgpu["values"], w["rtol"], w["atol"])
    return ("differ", why) if why else ("match", "")


def selftest():
    a = {"workload": "torch.matmul", "status": "ok", "values": {"x": 1.0, "l": [1.0, 2.0]}}
    cases = [
        (a, a, "match"),
        (a, dict(a, values={"x": 1.00001, "l": [1.0, 2.0]}), "match"),
        (a, dict(a, values={"x": 1.1, "l": [1.0, 2.0]}), "differ"),
        (a, dict(a, values={"x": 1.0, "l": [1.0]}), "differ"),
        (a, dict(a, values={"x": 1.0}), "differ"),
        (a, dict(a, status="fail", detail="boom"), "differ"),
        (dict(a, status="skip"), dict(a, status="skip"), "skip"),
    ]
    bad = 0
    for i, (n, g, want) in enumerate(cases):
        got, why = compare(n, g)
        print(f"{'PASS' if got == want else 'FAIL'} compare.{i}: {got} {why}")
        bad += got != want
    for name in WORKLOADS:  # every workload is registered with a tolerance
        ok = WORKLOADS[name]["rtol"] >= 0 and callable(WORKLOADS[name]["fn"])
        print(f"{'PASS' if ok else 'FAIL'} registered.{name}")
        bad += not ok
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "list":
        print("\n".join(WORKLOADS))
        return 0
    if len(argv) == 3 and argv[1] == "run" and argv[2] in WORKLOADS:
        res = run(argv[2])
        sys.stdout.flush()
        print(json.dumps(res))
        return 0 if res["status"] != "fail" else 1
    if len(argv) == 4 and argv[1] == "compare":
        def load(path):
            try:
                with open(path) as f:
                    lines = [ln for ln in f.read().splitlines() if ln.startswith("{")]
                return json.loads(lines[-1])
            except Exception as e:
                return {"status": "fail", "detail": f"no result ({type(e).__name__})"}
        verdict, why = compare(load(argv[2]), load(argv[3]))
        print(verdict + (f": {why}" if why else ""))
        return {"match": 0, "skip": 77}.get(verdict, 1)
    if len(argv) == 2 and argv[1] == "selftest":
        return selftest()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
