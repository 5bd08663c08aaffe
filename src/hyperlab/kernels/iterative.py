"""Matrix-free kernel regression (infinite-width paper, Eq. 18) for large N.

α = (K + εI)⁻¹ Y by preconditioned conjugate gradients, where K(U, U) is never held: every
matrix-vector product computes K in tiles on the fly ([`Tiles`][hyperlab.kernels.tiles.Tiles],
upper-triangle tiles only, each applied to both halves) and accumulates in float64. The
preconditioner is a rank-r partial pivoted Cholesky K ≈ LLᵀ with greedy, exact pivots (Harbrecht,
Peters & Schneider 2012; the preconditioner of GPyTorch's CG, Gardner et al. 2018), applied
through the Woodbury identity, or a randomized Nyström approximation (Frangella, Tropp & Udell
2023).
Memory is O(N · (block + r)) per kernel; with ``cache_gb`` the tiles that fit in that budget are
kept after the first product (only the rest are recomputed), trading memory for time.

Under ``torchrun`` (an initialised ``torch.distributed`` process group: gloo on CPU, nccl on
GPU), each rank computes its share of the tiles and one all-reduce per iteration sums the
products; every rank ends with the same α. Several kernels of one call (``get=("nngp", "ntk")``)
share their tiles and are solved side by side.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from hyperlab.kernels.tiles import (
    DEFAULT_BLOCK,
    Get,
    Tiles,
    check_positive_int,
    parse_get,
    run_tiles,
    tile_jobs,
)

__all__ = [
    "CGFit",
    "CGOptions",
    "NotConvergedError",
    "available_memory_bytes",
    "cg_memory_bytes",
    "check_cg_memory",
    "solve_cg",
]

F64 = torch.float64


@dataclass(frozen=True)
class CGOptions:
    """The matrix-free solver's settings ([`solve_cg`][hyperlab.kernels.iterative.solve_cg]):
    stop at relative residual ``tol`` within ``max_iter`` iterations; the preconditioner
    ('pivoted_cholesky': greedy, exact pivots; 'nystrom': randomized Nyström; 'none') of
    ``rank``; tiles of ``block_size`` in ``dtype`` (CG's products accumulate in float64; the
    Nyström factors are held in ``dtype``, float32 halving their memory, and applied in
    float64); keep up to ``cache_gb`` of tiles after the first product."""

    tol: float = 1e-8
    max_iter: int = 1000
    rank: int = 500
    preconditioner: Literal["pivoted_cholesky", "nystrom", "none"] = "nystrom"
    block_size: int = DEFAULT_BLOCK
    dtype: torch.dtype = torch.float64
    cache_gb: float = 0.0
    progress: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.tol < 1:
            raise ValueError(f"tol: expected a float in (0, 1), got {self.tol!r}")
        check_positive_int(self.max_iter, "max_iter")
        check_positive_int(self.rank, "rank", minimum=0)
        check_positive_int(self.block_size, "block_size")
        if self.preconditioner not in ("pivoted_cholesky", "nystrom", "none"):
            raise ValueError("preconditioner: expected 'pivoted_cholesky', 'nystrom' or "
                             f"'none', got {self.preconditioner!r}")  # fmt: skip
        if not self.cache_gb >= 0:
            raise ValueError(f"cache_gb: expected a non-negative float, got {self.cache_gb!r}")
        if self.dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype: expected torch.float64 or torch.float32, got {self.dtype!r}")


class NotConvergedError(RuntimeError):
    """Conjugate gradients did not reach ``tol`` within ``max_iter`` iterations."""


def cg_memory_bytes(n: int, options: CGOptions | None = None, *, kernels: int = 1,
                    targets: int = 1, threads: int | None = None) -> dict[str, float]:  # fmt: skip
    """Peak bytes of [`solve_cg`][hyperlab.kernels.iterative.solve_cg] on N = ``n`` samples,
    ``kernels`` kernels side by side and ``targets`` columns of Y, by part: 'cache' (the tiles
    kept, at most the upper triangle), 'preconditioner' (its peak while built: for Nyström the
    sketch and Y = K·sketch per thread, in the tiles' dtype; for pivoted Cholesky the factors,
    the fetched rows and the Woodbury factors), 'cg' (the solver's vectors), 'tiles' (the tiles
    in flight, one per thread, with the kernel's intermediates) and 'total'. The training
    inputs themselves are not counted."""
    o = options or CGOptions()
    t = max(1, threads or torch.get_num_threads())
    s, r, f8 = kernels, min(o.rank, n) if o.preconditioner != "none" else 0, 8.0
    b = min(o.block_size, n)
    upper = n * (n + b) / 2 * s * o.dtype.itemsize
    parts = {"cache": min(o.cache_gb * 2**30, upper)}
    if o.preconditioner == "nystrom":
        # in the tiles' dtype: the sketch's QR (input, LAPACK's copy, Q), then the sketch
        # and Y per thread; in float64 the r×r work (Gram, factor, inverse, eigenvectors and
        # LAPACK's workspace) and the preconditioner's r×r core per kernel, kept for CG
        parts["preconditioner"] = (max(3, 1 + s * t) * n * r * o.dtype.itemsize
                                   + (s + 8) * r * r * f8)  # fmt: skip
    else:
        parts["preconditioner"] = (2 * s * n * r + s * s * b * n * 2) * f8
    parts["cg"] = (7 + t) * s * n * targets * f8
    parts["tiles"] = t * s * b * b * (f8 + o.dtype.itemsize) * 8  # ~8 intermediates per entry
    parts["total"] = sum(parts.values())
    return parts


def available_memory_bytes(device: torch.device | str = "cpu") -> float | None:
    """Memory free for new allocations on ``device``: CUDA's free memory, Linux's
    MemAvailable, else the free physical pages (None where the platform does not say)."""
    device = torch.device(device)
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_cg_memory(n: int, options: CGOptions | None = None, *, kernels: int = 1,
                    targets: int = 1, device: torch.device | str = "cpu") -> None:  # fmt: skip
    """Raise MemoryError, naming the options to lower, when the CG solve's estimated peak
    ([`cg_memory_bytes`][hyperlab.kernels.iterative.cg_memory_bytes]) exceeds the memory
    available on ``device`` (the OS would otherwise kill the process without a message)."""
    o = options or CGOptions()
    free = available_memory_bytes(device)
    parts = cg_memory_bytes(n, o, kernels=kernels, targets=targets)
    if free is None or parts["total"] <= free:
        return
    gb = {k: v / 2**30 for k, v in parts.items()}
    raise MemoryError(
        f"the CG solve at N={n:,} ({kernels} kernel(s)) needs about {gb['total']:.1f} GiB "
        f"({o.preconditioner} preconditioner of rank={o.rank}: {gb['preconditioner']:.1f} GiB, "
        f"tile cache cache_gb={o.cache_gb:g}: {gb['cache']:.1f} GiB, solver and tiles "
        f"{gb['cg'] + gb['tiles']:.1f} GiB) but {free / 2**30:.1f} GiB is available: lower "
        "rank or cache_gb, or use fewer threads"
    )


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce(t: Tensor) -> Tensor:
    if _world()[1] > 1:
        dist.all_reduce(t)
    return t


def _tiles_of(kernel: object, u1: object, u2: object, names: tuple[str, ...], dtype) -> Tiles:
    make = getattr(kernel, "tiles", None)
    if make is None:
        raise TypeError(
            f"kernel: expected an analytic kernel with a .tiles() method (MLPKernel, "
            f"HyperKernel), got {type(kernel)}"
        )
    return make(u1, u2, get=names, dtype=dtype)


@dataclass
class CGFit:
    """The solved system of [`solve_cg`][hyperlab.kernels.iterative.solve_cg]: α per kernel and how
    it was
    reached. [`predict`][hyperlab.kernels.iterative.CGFit.predict] evaluates K(u, U) α (Eq. 18) in
    tiles, never holding K(u, U)."""

    kernel: object
    train: object
    alpha: dict[str, Tensor]
    iterations: int
    residual: dict[str, float]
    rank: int
    history: list[float] = field(default_factory=list)
    block_size: int = DEFAULT_BLOCK
    dtype: torch.dtype = F64
    squeeze: bool = False
    single: bool = False
    #: what the solve cost: 'preconditioner' and 'cg' seconds, and for Nyström 'tail' per
    #: kernel, λ_r / μ (the bound (λ_r + μ)/μ on the preconditioned condition number grows
    #: with it: Frangella et al. 2023, Thm. 5.1)
    stats: dict = field(default_factory=dict)

    def predict(self, test: object) -> Tensor | dict[str, Tensor]:
        """ŷ(u) = K(u, U) α for every kernel, (M,) or (M, T); split across ranks under torchrun."""
        names = tuple(self.alpha)
        tiles = _tiles_of(self.kernel, test, self.train, names, self.dtype)
        m, n = tiles.shape
        rank, world = _world()
        blocks = list(range(0, m, self.block_size))[rank::world]
        some = next(iter(self.alpha.values()))
        out = {k: torch.zeros(m, some.shape[1], dtype=F64, device=some.device) for k in names}

        def work(i0: int) -> None:  # one row block per job: writes never overlap
            rows = slice(i0, min(i0 + self.block_size, m))
            for j0 in range(0, n, self.block_size):
                cols = slice(j0, min(j0 + self.block_size, n))
                blk = tiles.tile(rows, cols)
                for k in names:
                    out[k][rows] += blk[k].to(F64) @ self.alpha[k][cols]

        run_tiles(work, blocks, tiles.device)
        for k in names:
            _all_reduce(out[k])
            if self.squeeze:
                out[k] = out[k][:, 0]
        return out[names[0]] if self.single else out


class _Operator:
    """K as a matrix-free operator over stacked kernels (S, N, T); the ridge εD is added by
    the caller."""

    def __init__(self, tiles: Tiles, block: int, cache_bytes: float = 0.0):
        self.tiles, self.block = tiles, block
        self.n = tiles.shape[0]
        rank, world = _world()
        self.jobs = tile_jobs(tiles, block)[rank::world]
        self.threads = max(1, torch.get_num_threads()) if tiles.device.type == "cpu" else 1
        # tiles kept after their first product, up to the budget (this rank's share), in one
        # preallocated buffer (thousands of separately allocated tiles fragment the heap far
        # beyond the budget); the rest are recomputed in every product
        per_entry = tiles.dtype.itemsize * len(tiles.names)
        self.slots: dict[int, dict[str, Tensor]] = {}
        self.filled: set[int] = set()
        offsets, used = {}, 0
        for i, (rows, cols, _) in enumerate(self.jobs):
            size = (rows.stop - rows.start) * (cols.stop - cols.start)
            if (used + size) * per_entry > cache_bytes:
                break
            offsets[i] = (used, rows.stop - rows.start, cols.stop - cols.start)
            used += size
        store = torch.empty(used * len(tiles.names), dtype=tiles.dtype, device=tiles.device)
        for i, (off, r, c) in offsets.items():
            self.slots[i] = {
                k: store[(n * used + off) : (n * used + off + r * c)].view(r, c)
                for n, k in enumerate(tiles.names)
            }

    def diagonal(self) -> Tensor:
        """diag K per kernel (S, N), from the diagonal tiles."""
        d = torch.empty(len(self.tiles.names), self.n, dtype=F64, device=self.tiles.device)
        for i0 in range(0, self.n, self.block):
            s = slice(i0, min(i0 + self.block, self.n))
            blk = self.tiles.tile(s, s)
            for i, k in enumerate(self.tiles.names):
                d[i, s] = torch.diagonal(blk[k]).to(F64)
        return d

    def rows(self, index: Tensor) -> Tensor:
        """K[index, :] per kernel, (S, len(index), N) float64."""
        blk = self.tiles.tile(index, slice(0, self.n))
        return torch.stack([blk[k].to(F64) for k in self.tiles.names])

    def matvec(self, v: Tensor) -> Tensor:
        """K v for stacked v (S, N, T): each upper-triangle tile once, applied to both halves;
        threads accumulate into their own buffers, ranks are summed by one all-reduce."""
        names = self.tiles.names
        jobs = list(enumerate(self.jobs))
        chunks = [jobs[i :: self.threads] for i in range(self.threads)]
        bufs = [torch.zeros_like(v) for _ in chunks]
        lock = threading.Lock()
        slots = iter(range(len(chunks)))

        def work(chunk: Sequence[tuple[int, tuple[slice, slice, bool]]]) -> None:
            with lock:
                buf = bufs[next(slots)]
            for j, (rows, cols, off_diagonal) in chunk:
                blk = self.slots.get(j)
                if blk is None or j not in self.filled:
                    fresh = self.tiles.tile(rows, cols)
                    if blk is not None:  # each slot belongs to one job: no lock needed
                        for k in names:
                            blk[k].copy_(fresh[k])
                        self.filled.add(j)
                    blk = fresh
                for i, k in enumerate(names):
                    # for CG, float32 tiles are widened, not v narrowed: the operator stays one
                    # fixed matrix, so CG's recursive residual tracks the true one; a float32
                    # v (Nyström's sketch) takes float32 products
                    kt = blk[k].to(v.dtype)
                    # accumulated by the GEMM itself: no product tensor and second pass over
                    # the rows (at Nyström's r columns that pass is a large share)
                    buf[i, rows].addmm_(kt, v[i, cols])
                    if off_diagonal:
                        buf[i, cols].addmm_(kt.T, v[i, rows])

        run_tiles(work, chunks, self.tiles.device)
        out = bufs[0]
        for b in bufs[1:]:
            out += b
        return _all_reduce(out)


def _pivoted_cholesky(op: _Operator, diag: Tensor, rank: int, block: int = 64,
                      exact: bool = True) -> list[Tensor]:  # fmt: skip
    """Partial pivoted Cholesky K ≈ L Lᵀ of rank ≤ ``rank`` for each kernel: (N, r) each.

    Greedy pivoting (largest residual diagonal first), with kernel rows fetched ``block`` at a
    time: the ``block`` largest residual diagonals are the candidates and their rows come in
    one tile call. ``exact``: every pivot is the global largest residual diagonal, taken from
    the fetched rows while it is among them, else the next block is fetched (the greedy choice
    of one-at-a-time pivoting, at block-fetch cost); not exact: the greedy choice runs within
    each block's candidates only (the earlier scheme: weaker pivots at small rank).
    """
    s, n = diag.shape
    rank = min(rank, n)
    factors = torch.zeros(s, n, rank, dtype=F64, device=diag.device)
    resid = diag.clone()
    floor = 1e-12 * diag.sum(1)  # stop a kernel's factor once its residual trace is negligible
    used = [0] * s
    while True:
        live = [k for k in range(s) if used[k] < rank and float(resid[k].sum()) > float(floor[k])]
        if not live:
            break
        b = min(block, n)
        cands = {k: resid[k].topk(b).indices for k in live}
        rows = op.rows(torch.cat([cands[k] for k in live]))  # (S, len(live)·b, N)
        for j, k in enumerate(live):
            cand, lk = cands[k], factors[k]
            r = rows[k, j * b : (j + 1) * b] - lk[cand, : used[k]] @ lk[:, : used[k]].T  # (b, N)
            open_ = torch.ones(b, dtype=torch.bool, device=diag.device)
            while used[k] < rank and bool(open_.any()):
                d = resid[k, cand].masked_fill(~open_, -1.0)
                c = int(d.argmax())
                if float(d[c]) <= 1e-12 * float(diag[k].max()):
                    break
                if exact and float(d[c]) < float(resid[k].max()):
                    break  # the global pivot is not among the fetched rows: fetch again
                col = r[c] / math.sqrt(float(d[c]))
                lk[:, used[k]] = col
                used[k] += 1
                resid[k] -= col * col
                resid[k, cand[c]] = 0.0
                resid[k].clamp_min_(0.0)
                open_[c] = False
                r -= col[cand][:, None] * col[None, :]
    return [factors[k, :, : used[k]] for k in range(s)]


def _nystrom(op: _Operator, n_kernels: int, n: int, rank: int, shift: Tensor, seed: int
             ) -> tuple[list[Tensor], list[Tensor]]:  # fmt: skip
    """Randomized Nyström approximation K ≈ U Λ Uᵀ of rank ``rank`` per kernel (Frangella,
    Tropp & Udell 2023, Alg. 2.1): one product of K with an orthonormal Gaussian sketch Ω (all
    columns at once, shared by the kernels), Y_ν = (K + νI)Ω shifted in place, B = Y_ν C⁻ᵀ
    (C the Cholesky factor of ΩᵀY_ν), and B's SVD from the eigendecomposition of BᵀB:
    U = B V Σ⁻¹, orthonormal up to rounding · κ(B)² (the preconditioner corrects for that).
    Every N×r matrix is held in the tiles' dtype and overwritten in row chunks (B, then U,
    overwrite Y); the r×r work and every sum over N are in float64. The peak is the sketch
    and Y, or the sketch's QR before them (see
    [`cg_memory_bytes`][hyperlab.kernels.iterative.cg_memory_bytes])."""
    dt = op.tiles.dtype
    g = torch.Generator(device="cpu").manual_seed(seed)
    omega = torch.empty(n, rank, dtype=dt)
    for i in range(0, n, _CHUNK):  # float64 draws in chunks: the same sketch in either dtype
        omega[i : i + _CHUNK] = torch.randn(min(_CHUNK, n - i), rank, generator=g, dtype=F64)
    omega = torch.linalg.qr(omega)[0]
    # LAPACK's Q is column-major, and Y and U would inherit that: their row chunks (the
    # factorisation's and every preconditioner apply's) would be strided copies
    omega = omega.contiguous().to(shift.device)
    y = op.matvec(omega.expand(n_kernels, -1, -1))  # (S, N, r), the tiles' dtype
    eps = float(torch.finfo(dt).eps)
    us, lams = [], []
    for k in range(n_kernels):
        yk = y[k]
        nu = eps * float(torch.linalg.norm(yk, dtype=F64))
        yk.add_(omega, alpha=nu)
        core = _gram(omega, yk)
        c = _shifted_cholesky(0.5 * (core + core.T), nu)
        _rows_times(yk, torch.linalg.inv(c).T)  # B = Y_ν C⁻ᵀ, over Y_ν
        sig2, v = torch.linalg.eigh(_gram(yk, yk))  # BᵀB = V Σ² Vᵀ, ascending
        sig2, v = sig2.flip(0).clamp_min(0.0), v.flip(1)
        keep = sig2 > 10.0 * eps * sig2[0]  # B's numerical rank (below: rounding)
        w = torch.zeros_like(v)
        w[:, keep] = v[:, keep] / sig2[keep].sqrt()
        _rows_times(yk, w)  # U = B V Σ⁻¹ (columns past the numerical rank: 0)
        us.append(yk)
        lams.append((sig2 - nu).clamp_min(0.0) * keep)
    return us, lams


#: rows of an N×r matrix per chunk of the Nyström factorisation's products
_CHUNK = 4096


def _gram(a: Tensor, b: Tensor, exact: bool = False) -> Tensor:
    """aᵀb (float64) for N-row matrices in any dtype: each chunk of rows in their dtype (in
    float64 where ``exact``), the sum over chunks in float64."""
    out = torch.zeros(a.shape[1], b.shape[1], dtype=F64, device=a.device)
    if exact:
        for rows, wide in _widened(a):
            out.addmm_(wide.T, wide if b is a else b[rows].to(F64))
        return out
    part = torch.empty(a.shape[1], b.shape[1], dtype=a.dtype, device=a.device)
    for i in range(0, a.shape[0], _CHUNK):
        out += torch.mm(a[i : i + _CHUNK].T, b[i : i + _CHUNK], out=part)
    return out


#: rows per chunk where a float32 factor is widened to float64, through one reused buffer
#: (fresh chunks would page-fault on every preconditioner apply)
_WIDE_CHUNK = 1024


def _widened(a: Tensor):
    """(rows, a[rows] in float64) over chunks of a's rows, through one reused buffer (a
    itself where it is float64)."""
    if a.dtype == F64:
        yield slice(0, a.shape[0]), a
        return
    buf = torch.empty(min(_WIDE_CHUNK, a.shape[0]), a.shape[1], dtype=F64, device=a.device)
    for i in range(0, a.shape[0], _WIDE_CHUNK):
        rows = slice(i, min(i + _WIDE_CHUNK, a.shape[0]))
        wide = buf[: rows.stop - i]
        wide.copy_(a[rows])
        yield rows, wide


def _rows_times(a: Tensor, m: Tensor) -> None:
    """a ← a·m in place, in row chunks through one reused buffer (m: r×r float64, applied in
    a's dtype)."""
    m = m.to(a.dtype)
    part = torch.empty(min(_CHUNK, a.shape[0]), m.shape[1], dtype=a.dtype, device=a.device)
    for i in range(0, a.shape[0], _CHUNK):
        rows = a[i : i + _CHUNK]
        rows.copy_(torch.mm(rows, m, out=part[: rows.shape[0]]))


def _shifted_cholesky(core: Tensor, nu: float) -> Tensor:
    """Cholesky of Ωᵀ Y_ν; a core that rounding left indefinite (float32 sketches) gets ν
    more on its diagonal, tenfold each try."""
    eye = torch.eye(core.shape[0], dtype=core.dtype, device=core.device)
    for extra in (0.0, *(nu * 10.0**p for p in range(1, 8))):
        c, info = torch.linalg.cholesky_ex(core + extra * eye)
        if int(info) == 0:
            return c
    raise NotConvergedError("Nyström: the sketch's core is not positive definite; check the "
                            "kernel or use float64 tiles")  # fmt: skip


class _NystromPreconditioner:
    """P⁻¹ v = (λ_r + μ) U (Λ + μI)⁻¹ Uᵀ v + (v - U Uᵀ v) for K + μI, μ the ridge's mean.

    U is held in the tiles' dtype, where it is orthonormal only to rounding; P⁻¹ is applied as
    v + U M Uᵀ v with M = R⁻¹ (S - I) R⁻ᵀ, S = (λ_r + μ)(Λ + μI)⁻¹ and UᵀU = RᵀR exact in
    float64, so P⁻¹ = (I - QQᵀ) + Q S Qᵀ for the orthonormal Q = U R⁻¹: symmetric positive
    definite however U was rounded, and the same linear map at every iteration (products in
    float64)."""

    def __init__(self, us: list[Tensor], lams: list[Tensor], reg: Tensor):
        self.us, self.lams = us, lams
        self.mu = reg.mean(1)  # (S,)
        self.cores = []
        for k, (u, lam) in enumerate(zip(us, lams, strict=True)):
            mu = float(self.mu[k])
            scale = (float(lam[-1]) + mu) / (lam + mu) - 1.0
            gram = _gram(u, u, exact=True)
            dead = gram.diagonal() == 0  # columns past the numerical rank
            gram.diagonal()[dead] = 1.0
            scale[dead] = 0.0
            r_inv = torch.linalg.inv(torch.linalg.cholesky(gram, upper=True))
            self.cores.append(r_inv @ (scale[:, None] * r_inv.T))

    def __call__(self, v: Tensor) -> Tensor:
        out = v.clone()
        for k, (u, core) in enumerate(zip(self.us, self.cores, strict=True)):
            c = core @ _gram(u, v[k], exact=True)
            for rows, wide in _widened(u):
                out[k, rows].addmm_(wide, c)
        return out


class _Preconditioner:
    """P⁻¹ v for P = LLᵀ + Λ (Λ = the ridge, diagonal), by Woodbury:
    P⁻¹ = Λ⁻¹ - Λ⁻¹L (I + LᵀΛ⁻¹L)⁻¹ LᵀΛ⁻¹."""

    def __init__(self, factors: list[Tensor], reg: Tensor):
        self.reg = reg  # (S, N)
        self.scaled, self.chol = [], []
        for k, lk in enumerate(factors):
            sl = lk / reg[k, :, None]
            core = lk.T @ sl
            core.diagonal().add_(1.0)
            self.scaled.append(sl)
            self.chol.append(torch.linalg.cholesky(core))

    def __call__(self, v: Tensor) -> Tensor:
        out = v / self.reg[:, :, None]
        for k, (sl, ch) in enumerate(zip(self.scaled, self.chol, strict=True)):
            if sl.shape[1]:
                out[k] -= sl @ torch.cholesky_solve(sl.T @ v[k], ch)
        return out


def solve_cg(
    kernel: object,
    train: object,
    y_train: Tensor,
    *,
    get: Get = "ntk",
    eps: float = 1e-3,
    ridge: Literal["identity", "relative"] = "identity",
    options: CGOptions | None = None,
) -> CGFit:
    """Solve (K + εI) α = Y (Eq. 18) without forming K: preconditioned CG (the ``'cg'`` solver
    of [`fit_kernel_regression`][hyperlab.kernels.regression.fit_kernel_regression], which is
    the front door).

    ``kernel`` is an analytic kernel ([`MLPKernel`][hyperlab.kernels.analytic.MLPKernel],
    [`HyperKernel`][hyperlab.kernels.analytic.HyperKernel]), ``train`` its training inputs,
    ``y_train`` (N,)
    or
    (N, T). Stops when every column's residual ‖Y - (K + εI)α‖ / ‖Y‖ ≤ ``options.tol``; raises
    [`NotConvergedError`][hyperlab.kernels.iterative.NotConvergedError] otherwise. ``options``
    ([`CGOptions`][hyperlab.kernels.iterative.CGOptions]): the
    preconditioner and its rank (0 or 'none': plain CG), the tiles' dtype, a tile cache
    (0: fully matrix-free, O(N · (block + rank)); the upper triangle of one float32 kernel at
    N = 20,000 takes 0.8 GB). Raises MemoryError before any work where the estimated peak
    ([`cg_memory_bytes`][hyperlab.kernels.iterative.cg_memory_bytes]) exceeds the free memory.
    """
    o = options or CGOptions()
    names, single = parse_get(get)
    if not eps > 0:
        raise ValueError(f"eps: expected a positive float for the iterative solver, got {eps!r}")
    if ridge not in ("identity", "relative"):
        raise ValueError(f"ridge: expected 'identity' or 'relative', got {ridge!r}")
    tiles = _tiles_of(kernel, train, None, names, o.dtype)
    n = tiles.shape[0]
    y = torch.as_tensor(y_train).to(dtype=F64, device=tiles.device)
    if y.dim() not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"y_train: expected shape ({n},) or ({n}, T), got {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise ValueError("y_train: contains NaN or infinite values")
    check_cg_memory(n, o, kernels=len(names), targets=1 if y.dim() == 1 else y.shape[1],
                    device=tiles.device)  # fmt: skip
    squeeze = y.dim() == 1
    b = (y[:, None] if squeeze else y).expand(len(names), -1, -1).clone()  # (S, N, T)
    op = _Operator(tiles, o.block_size, o.cache_gb * 2**30)
    diag = op.diagonal()
    reg = torch.full_like(diag, eps) if ridge == "identity" else eps * diag
    start = time.perf_counter()
    precond = _make_preconditioner(op, diag, reg, o, n, len(names))
    stats: dict = {"preconditioner_seconds": round(time.perf_counter() - start, 3)}
    if isinstance(precond, _NystromPreconditioner):
        lams, mu = precond.lams, precond.mu
        stats["tail"] = {k: float(lams[i][-1] / mu[i]) if len(lams[i]) else 0.0
                         for i, k in enumerate(names)}  # fmt: skip

    def apply(v: Tensor) -> Tensor:
        return op.matvec(v) + reg[:, :, None] * v

    start = time.perf_counter()
    x, rel, it, history = _pcg(apply, precond, b, o.tol, o.max_iter, o.progress)
    stats["cg_seconds"] = round(time.perf_counter() - start, 3)
    # the recursive residual drifts from the true one: check it with one more product
    b_norm = b.norm(dim=1, keepdim=True).clamp_min(torch.finfo(F64).tiny)
    true = ((b - apply(x)).norm(dim=1, keepdim=True) / b_norm).amax(dim=(1, 2))
    residual = {k: float(true[i]) for i, k in enumerate(names)}
    if rel > o.tol or max(residual.values()) > 10 * o.tol:
        raise NotConvergedError(
            f"conjugate gradients: relative residual {max(residual.values()):.3g} > tol "
            f"{o.tol:g} after {it} iterations (max_iter={o.max_iter}, rank={o.rank}); raise "
            "max_iter or rank, loosen tol, or increase eps"
        )
    return CGFit(kernel=kernel, train=train, alpha={k: x[i] for i, k in enumerate(names)},
                 iterations=it, residual=residual, rank=o.rank, history=history,
                 block_size=o.block_size, dtype=o.dtype, squeeze=squeeze,
                 single=single, stats=stats)  # fmt: skip


def _make_preconditioner(op: _Operator, diag: Tensor, reg: Tensor, o: CGOptions, n: int,
                         s: int):  # fmt: skip
    if o.rank == 0 or o.preconditioner == "none":
        empty = [torch.zeros(n, 0, dtype=F64, device=diag.device) for _ in range(s)]
        return _Preconditioner(empty, reg)
    if o.preconditioner == "nystrom":
        us, lams = _nystrom(op, s, n, min(o.rank, n), reg, o.seed)
        return _NystromPreconditioner(us, lams, reg)
    return _Preconditioner(_pivoted_cholesky(op, diag, o.rank), reg)


def _pcg(apply, precond, b: Tensor, tol: float, max_iter: int, progress: bool):
    """Preconditioned conjugate gradients on S systems × T columns at once (b: (S, N, T));
    a column that reached ``tol`` stays put. Returns (x, last relative residual, iterations,
    residual per iteration)."""
    x = torch.zeros_like(b)
    r = b.clone()
    b_norm = b.norm(dim=1, keepdim=True).clamp_min(torch.finfo(F64).tiny)  # (S, 1, T)
    z = precond(r)
    p = z.clone()
    rz = (r * z).sum(1, keepdim=True)
    history: list[float] = []
    bar = tqdm(total=max_iter, desc="CG", disable=not progress or _world()[0] != 0)
    rel = (r.norm(dim=1, keepdim=True) / b_norm).amax()
    it = 0
    while float(rel) > tol and it < max_iter:
        ap = apply(p)
        active = (r.norm(dim=1, keepdim=True) / b_norm) > tol  # frozen columns stay put
        denom = (p * ap).sum(1, keepdim=True)
        a = torch.where(active, rz / denom.clamp_min(torch.finfo(F64).tiny), 0.0)
        x += a * p
        r -= a * ap
        z = precond(r)
        rz_new = (r * z).sum(1, keepdim=True)
        beta = torch.where(active, rz_new / rz.clamp_min(torch.finfo(F64).tiny), 0.0)
        p = z + beta * p
        rz = rz_new
        it += 1
        rel = (r.norm(dim=1, keepdim=True) / b_norm).amax()
        history.append(float(rel))
        bar.update()
        bar.set_postfix(residual=f"{float(rel):.2e}")
    bar.close()
    return x, float(rel), it, history
