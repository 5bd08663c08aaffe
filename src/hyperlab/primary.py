"""Primary networks g(x; θ) as functional, batched objects.

A primary network is a description of its parameter tensors
([`ParamLayout`][hyperlab.primary.ParamLayout]) plus a forward
that takes those parameters as an argument. Parameters may carry any number of leading batch
dimensions ``P``; the input then has shape ``(*P, *G, *in_shape)``: one parameter set per leading
index, applied to a group ``G`` (possibly empty) of inputs. All parameter sets run in one batched
call (``bmm`` / grouped convolution / ``torch.func.vmap``), never a Python loop over samples.

Built in: [`MLP`][hyperlab.primary.MLP], [`ConvNet`][hyperlab.primary.ConvNet] (conv + pool +
dense, the papers' MNIST target) and
[`hyperlab.modules.ModulePrimary`][hyperlab.modules.ModulePrimary], which turns any ``nn.Module``
into a primary via
``torch.func`` (norm layers per weight set, partial generation).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperlab.runtime import checks_enabled

Parameterization = Literal["standard", "ntk"]
Params = Mapping[str, Tensor]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "sine", "identity")
#: SIREN's ω₀ (Sitzmann et al. 2020): "sine" is sin(ω₀ x)
OMEGA0 = 30.0
LEAKY_SLOPE = 0.01


#: activations f with f(max(a, b)) = max(f(a), f(b)): max-pooling commutes with them
MONOTONE_ACTIVATIONS = frozenset({"relu", "leaky_relu", "elu", "tanh", "sigmoid", "identity"})


def activation_fn(name: str, negative_slope: float = LEAKY_SLOPE, omega0: float = OMEGA0):
    """The elementwise function for an activation name (one of
    ``ACTIVATIONS``; 'sine' is
    SIREN's sin(ω₀ x))."""
    if name == "sine":
        return lambda t: torch.sin(omega0 * t)
    if name == "relu":
        return F.relu
    if name == "tanh":
        return torch.tanh
    if name == "sigmoid":
        return torch.sigmoid
    if name == "leaky_relu":
        return lambda t: F.leaky_relu(t, negative_slope)
    if name == "elu":
        return F.elu
    if name == "identity":
        return lambda t: t
    raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {name!r}")


def activation_gain(name: str, negative_slope: float = LEAKY_SLOPE) -> float:
    """Gain c with E[(c·σ(u))²] ≈ E[u²] (√2 for ReLU: the infinite-width paper's Eq. 2 factor)."""
    if name in ("identity", "sine"):  # a SIREN's scales come from its own init (MLP)
        return 1.0
    if name == "elu":  # E[elu(u)²], u ~ N(0, 1), in closed form (torch has no ELU gain)
        phi = lambda z: 0.5 * math.erfc(-z / math.sqrt(2))  # noqa: E731 - the normal CDF
        second = 0.5 + math.e**2 * phi(-2.0) - 2 * math.exp(0.5) * phi(-1.0) + 0.5
        return 1.0 / math.sqrt(second)
    activation_fn(name)  # validates the name
    arg = negative_slope if name == "leaky_relu" else None
    return float(nn.init.calculate_gain(name, arg))  # type: ignore[arg-type]  # validated


Role = Literal["weight", "bias", "scale", "shift"]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor of a primary: name, shape, fans and its role: a ``weight`` or
    ``bias`` of a dense/conv layer, or a norm layer's ``scale`` (init 1) or ``shift`` (init 0).
    ``mean`` and ``std``, where set, are the tensor's own init (what a generated tensor starts
    at: the head's init target); unset, the role's default rule applies."""

    name: str
    shape: tuple[int, ...]
    role: Role
    fan_in: int
    fan_out: int
    mean: float | None = None
    std: float | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def init_mean(self) -> float:
        """The mean a generated tensor starts at: 1 for a norm scale, else 0 unless set."""
        if self.mean is not None:
            return self.mean
        return 1.0 if self.role == "scale" else 0.0


class ParamLayout:
    """Ordered parameter specs of a primary; converts between dicts and flat vectors."""

    def __init__(self, specs: Sequence[ParamSpec]):
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"specs: parameter names must be unique, got {names}")
        self.specs: tuple[ParamSpec, ...] = tuple(specs)
        self._by_name = {s.name: s for s in self.specs}
        offsets, total = [], 0
        for s in self.specs:
            offsets.append(total)
            total += s.numel
        self.offsets: tuple[int, ...] = tuple(offsets)
        self.numel: int = total

    def __iter__(self) -> Iterator[ParamSpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, name: str) -> ParamSpec:
        return self._by_name[name]

    def __repr__(self) -> str:
        body = ", ".join(f"{s.name}{list(s.shape)}" for s in self.specs)
        return f"ParamLayout({body}; numel={self.numel})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Split ``flat`` of shape (*P, numel) into named tensors of shape (*P, *spec.shape)."""
        if flat.shape[-1:] != (self.numel,):
            raise ValueError(
                f"flat: expected last dimension {self.numel} (the layout's parameter count), "
                f"got shape {tuple(flat.shape)}"
            )
        batch = flat.shape[:-1]
        # One split (not per-tensor slicing): its backward is a single concatenation.
        parts = torch.split(flat, [s.numel for s in self.specs], dim=-1)
        return {
            s.name: part.reshape(*batch, *s.shape)
            for s, part in zip(self.specs, parts, strict=True)
        }

    def flatten(self, params: Params) -> Tensor:
        """Concatenate named tensors (*P, *shape) into one (*P, numel) vector, layout order."""
        batch = self.batch_shape(params)
        return torch.cat([params[s.name].reshape(*batch, s.numel) for s in self.specs], dim=-1)

    def batch_shape(self, params: Params, argument: str = "params") -> torch.Size:
        """Validate ``params`` against the layout and return their common leading batch shape."""
        if not isinstance(params, Mapping):
            raise TypeError(f"{argument}: expected a mapping name -> tensor, got {type(params)}")
        missing = [n for n in self.names if n not in params]
        extra = [n for n in params if n not in self._by_name]
        if missing or extra:
            raise ValueError(
                f"{argument}: names do not match the layout; missing {missing}, unexpected {extra}"
            )
        batch: torch.Size | None = None
        for s in self.specs:
            t = params[s.name]
            nd = len(s.shape)
            if t.dim() < nd or tuple(t.shape[t.dim() - nd :]) != s.shape:
                want = ", ".join(map(str, s.shape))
                raise ValueError(
                    f"{argument}[{s.name!r}]: expected shape (*batch, {want}), got {tuple(t.shape)}"
                )
            b = t.shape[: t.dim() - nd]
            if batch is None:
                batch = b
            elif b != batch:
                raise ValueError(
                    f"{argument}[{s.name!r}]: batch shape {tuple(b)} differs from "
                    f"{tuple(batch)} of the other parameters"
                )
        return batch if batch is not None else torch.Size()


def init_params(
    layout: ParamLayout,
    batch_shape: Sequence[int] = (),
    *,
    parameterization: Parameterization = "standard",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """Fresh parameters for ``layout`` with leading ``batch_shape``.

    standard: U(-1/√fan_in, 1/√fan_in) for weights and biases (``nn.Linear``/``nn.Conv2d``
    default). ntk: weights N(0, 1) and zero biases; the forward carries the 1/√fan_in factor.
    A spec with its own ``std`` (and ``mean``), and every norm scale (1) and shift (0), draws
    uniformly with that mean and std instead.
    """
    if parameterization not in ("standard", "ntk"):
        raise ValueError(
            f"parameterization: expected 'standard' or 'ntk', got {parameterization!r}"
        )
    out = {}
    for s in layout:
        shape = (*batch_shape, *s.shape)
        if s.std is not None or s.role in ("scale", "shift"):  # the tensor's own init
            bound = math.sqrt(3.0) * (s.std or 0.0)  # uniform with that std around the mean
            t = torch.rand(shape, generator=generator, device=device, dtype=dtype)
            out[s.name] = t.mul_(2 * bound).sub_(bound).add_(s.init_mean)
            continue
        if parameterization == "ntk":
            if s.role == "weight":
                t = torch.randn(shape, generator=generator, device=device, dtype=dtype)
            else:
                t = torch.zeros(shape, device=device, dtype=dtype)
        else:
            bound = 1.0 / math.sqrt(s.fan_in)
            t = torch.rand(shape, generator=generator, device=device, dtype=dtype)
            t = t.mul_(2 * bound).sub_(bound)
        out[s.name] = t
    return out


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def check_finite(x: Tensor, argument: str) -> None:
    """Raise a ValueError naming ``argument`` if ``x`` holds NaN/inf (skipped under torch.func
    and torch.compile, where a data-dependent check would break the graph, and where
    [`hyperlab.runtime.input_checks`][hyperlab.runtime.input_checks] turned it off: it reads a
    value back from the device)."""
    if not checks_enabled() or torch.compiler.is_compiling():
        return
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        return  # inside vmap/grad the check would be data-dependent control flow
    # One reduction instead of isfinite's elementwise passes; a non-finite sum (NaN/inf inside,
    # or an overflow of huge finite values) is confirmed element by element.
    if x.is_floating_point() and not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError(f"{argument}: contains NaN or infinite values")


def check_float(x: Tensor, argument: str) -> None:
    """Integer inputs (raw uint8 pixels) are refused with the conversion to use."""
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(
            f"{argument}: expected a floating-point tensor, got {x.dtype}; convert raw images "
            "with x.float() / 255 (or the dataset's normalisation)"
        )


def check_dtype(x: Tensor, dtype: torch.dtype, argument: str) -> None:
    """A floating ``x`` whose dtype is not the parameters' ``dtype`` is a TypeError naming
    ``argument`` and both conversions (skipped under autocast, which mixes them on purpose)."""
    if x.dtype == dtype or not x.is_floating_point() or not dtype.is_floating_point:
        return
    if torch.is_autocast_enabled(x.device.type):
        return
    name = str(dtype).removeprefix("torch.")
    raise TypeError(
        f"{argument}: dtype {str(x.dtype).removeprefix('torch.')} differs from the model's "
        f"parameters ({name}); convert the input with {argument}.to(torch.{name}) or the model "
        f"with model.to({x.dtype})"
    )


class Primary(nn.Module):
    """Base class: a functional network ``g(x; θ)`` with a
    [`ParamLayout`][hyperlab.primary.ParamLayout].

    Subclasses set ``layout``, ``in_shape`` and ``out_shape`` and implement
    ``_forward_single(x, params)`` (params unbatched, x of shape (n, *in_shape)) and
    ``_forward_batched(x, params)`` (params with one batch dim b, x of shape (b, n, *in_shape)).
    """

    layout: ParamLayout
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    parameterization: Parameterization = "standard"
    validate_inputs: bool = True
    #: gain of the activation (√2 for ReLU): sets the hyperfan-in target variance
    gain: float = 1.0
    #: capability: a stack of dense/conv layers, one (filter, bias) per unit, with one
    #: ``activation`` between layers, as
    # [`hyperlab.generative.gauge.layers_of`][hyperlab.generative.gauge.layers_of] reads it
    #: (gauge fixing and the MNF baseline need it)
    layered: bool = False
    activation: str | None = None
    activate_output: bool = False
    #: capability: [`forward_fused_head`][hyperlab.primary.Primary.forward_fused_head] contracts x
    # with a linear head's weights directly
    fused_head: bool = False

    def forward(self, x: Tensor, params: Params) -> Tensor:
        """Apply g to ``x`` of shape (*P, *G, *in_shape) with ``params`` of batch shape P."""
        batch = self.layout.batch_shape(params)
        if not torch.is_tensor(x):
            raise TypeError(f"x: expected a tensor, got {type(x)}")
        check_float(x, "x")
        first = params[self.layout.specs[0].name]
        check_dtype(x, first.dtype, "x")
        nin, nb = len(self.in_shape), len(batch)
        if x.dim() < nb + nin or tuple(x.shape[x.dim() - nin :]) != self.in_shape:
            raise ValueError(
                f"x: expected shape (*batch, *group, {', '.join(map(str, self.in_shape))}) "
                f"with batch {tuple(batch)} from params, got {tuple(x.shape)}"
            )
        if tuple(x.shape[:nb]) != tuple(batch):
            raise ValueError(
                f"x: leading dims {tuple(x.shape[:nb])} must equal the params batch shape "
                f"{tuple(batch)} (one parameter set per leading index)"
            )
        if self.validate_inputs:
            check_finite(x, "x")
        group = x.shape[nb : x.dim() - nin]
        n = math.prod(group)
        if nb == 0:
            out = self._forward_single(x.reshape(n, *self.in_shape), params)
            return out.reshape(*group, *self.out_shape)
        b = math.prod(batch)
        flat = {k: v.reshape(b, *self.layout[k].shape) for k, v in params.items()}
        out = self._forward_batched(x.reshape(b, n, *self.in_shape), flat)
        return out.reshape(*batch, *group, *self.out_shape)

    def _forward_single(self, x: Tensor, params: Params) -> Tensor:
        return self._forward_batched(
            x.unsqueeze(0), {k: v.unsqueeze(0) for k, v in params.items()}
        ).squeeze(0)

    def _forward_batched(self, x: Tensor, params: Params) -> Tensor:
        raise NotImplementedError

    def init_params(
        self,
        batch_shape: Sequence[int] = (),
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> dict[str, Tensor]:
        """Fresh parameters with leading ``batch_shape``
        ([`init_params`][hyperlab.primary.init_params])."""
        return init_params(
            self.layout,
            batch_shape,
            parameterization=self.parameterization,
            generator=generator,
            device=device,
            dtype=dtype,
        )

    def target_variance(self, spec: ParamSpec) -> float:
        """Variance a generated weight should have at init (hyperfan-in target).

        Standard parameterization: He-style gain²/fan_in; NTK parameterization: 1, since the forward
        already scales by 1/√fan_in (infinite-width paper, Eq. 3).
        """
        if spec.std is not None:
            return spec.std**2
        if self.parameterization == "ntk":
            return 1.0
        return self.gain**2 / spec.fan_in

    def forward_fused_head(
        self,
        x: Tensor,
        features: Tensor,
        weights: Sequence[Tensor],
        biases: Sequence[Tensor],
        scale: float,
    ) -> Tensor:
        """g(x; θ) with θ_s = scale·W_s e + b_s from a linear head, without materialising θ.

        Only for primaries with ``fused_head``; ``x`` (B, *in_shape), ``features`` e (B, d_k),
        ``weights`` W_s (numel_s, d_k) and ``biases`` b_s (numel_s,), one per layout tensor.
        """
        raise NotImplementedError(f"{type(self).__name__} has no fused head path")

    def bind(self, params: Params | None = None, *, generator: torch.Generator | None = None):
        """An ``nn.Module`` that owns one parameter set of this primary (trainable as usual)."""
        return BoundPrimary(self, params, generator=generator)


class BoundPrimary(nn.Module):
    """A primary with its own ``nn.Parameter``s; ``named_parameters()`` uses the layout names."""

    def __init__(
        self,
        primary: Primary,
        params: Params | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.primary = primary
        if params is None:
            params = primary.init_params(generator=generator)
        if primary.layout.batch_shape(params) != torch.Size():
            raise ValueError("params: a bound primary takes one unbatched parameter set")
        self._names = primary.layout.names
        for name in self._names:
            *path, leaf = name.split(".")
            mod: nn.Module = self
            for part in path:
                if not hasattr(mod, part):
                    mod.add_module(part, nn.Module())
                mod = getattr(mod, part)
            mod.register_parameter(leaf, nn.Parameter(params[name].detach().clone()))

    def params(self) -> dict[str, Tensor]:
        """The parameter dict in layout order (tensors are the live ``nn.Parameter``s)."""
        own = dict(self.named_parameters())
        return {n: own[n] for n in self._names}

    def forward(self, x: Tensor) -> Tensor:
        return self.primary(x, self.params())


class MLP(Primary):
    """Fully connected primary: sizes [d_in, h_1, …, d_out], activation between layers.

    ``parameterization='ntk'`` follows the infinite-width paper's Eq. 2-3: each layer computes
    √(1/fan_in)·W a + b and each activation is multiplied by its gain (√2 for ReLU).
    ``activate_output=True`` applies the activation after the last layer too (for trunks).
    ``hidden_activations`` (one bool per hidden layer) applies the activation only where True:
    ``[True, False, ...]`` is the infinite-width paper's released Fig. 2 target (notes B.4).
    ``activation='sine'`` is a SIREN (Sitzmann et al. 2020): sin(ω₀ ·) with ``omega0``, and
    SIREN's initialisation (first layer U(−1/n, 1/n), the others U(−√(6/n)/ω₀, √(6/n)/ω₀)) as
    the weights' init and the generated weights' target.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        *,
        bias: bool = True,
        parameterization: Parameterization = "standard",
        activate_output: bool = False,
        negative_slope: float = LEAKY_SLOPE,
        hidden_activations: Sequence[bool] | None = None,
        omega0: float = OMEGA0,
    ):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise ValueError(
                f"sizes: expected at least two positive ints [d_in, ..., d_out], got {sizes}"
            )
        if parameterization not in ("standard", "ntk"):
            raise ValueError(
                f"parameterization: expected 'standard' or 'ntk', got {parameterization!r}"
            )
        if activation == "sine" and parameterization == "ntk":
            raise ValueError("parameterization: a SIREN (activation='sine') uses its own init; "
                             "expected 'standard'")  # fmt: skip
        self.sizes = sizes
        self.activation = activation
        self.act = activation_fn(activation, negative_slope, omega0)
        self.gain = activation_gain(activation, negative_slope)
        self.omega0 = omega0
        self.bias = bias
        self.parameterization = parameterization
        self.activate_output = activate_output
        if hidden_activations is None:
            hidden_activations = [True] * (len(sizes) - 2)
        if len(hidden_activations) != len(sizes) - 2:
            raise ValueError(
                f"hidden_activations: expected {len(sizes) - 2} bools (one per hidden layer), "
                f"got {list(hidden_activations)}"
            )
        self.hidden_activations = [bool(a) for a in hidden_activations]
        specs = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            std = None
            if activation == "sine":  # SIREN's init: U(±1/n) first, U(±√(6/n)/ω₀) after
                bound = 1.0 / a if i == 0 else math.sqrt(6.0 / a) / omega0
                std = bound / math.sqrt(3.0)
            specs.append(ParamSpec(f"fc{i}.weight", (b, a), "weight", a, b, std=std))
            if bias:
                specs.append(ParamSpec(f"fc{i}.bias", (b,), "bias", a, b))
        self.layout = ParamLayout(specs)
        self.in_shape = (sizes[0],)
        self.out_shape = (sizes[-1],)
        self.layered = True
        self.fused_head = True

    @property
    def depth(self) -> int:
        """Number of linear layers."""
        return len(self.sizes) - 1

    def _post(self, h: Tensor, i: int) -> Tensor:
        hidden = i < self.depth - 1
        if (hidden and self.hidden_activations[i]) or (not hidden and self.activate_output):
            h = self.act(h)
            if self.parameterization == "ntk":
                h = h * self.gain
        return h

    def _forward_single(self, x: Tensor, params: Params) -> Tensor:
        return self._layers(x, params, 0)

    def _layers(self, h: Tensor, params: Params, start: int) -> Tensor:
        """Layers ``start``… on h, one unbatched θ."""
        for i in range(start, self.depth):
            w, b = params[f"fc{i}.weight"], params.get(f"fc{i}.bias")
            if self.parameterization == "ntk":
                h = self._affine(F.linear(h, w), b, i)
            else:
                h = F.linear(h, w, b)
            h = self._post(h, i)
        return h

    def _affine(self, h: Tensor, bias: Tensor | None, i: int) -> Tensor:
        """Layer i's NTK scale and bias on its product h = W a."""
        h = h * (1.0 / math.sqrt(self.sizes[i]))
        return h if bias is None else h + bias

    def forward_concat(self, parts: Sequence[Tensor], params: Params) -> Tensor:
        """g([p_1; p_2; …]; θ) for one unbatched θ, without forming the concatenation: the first
        layer is Σ_j W_j p_j, W_j its columns for part j, each product taken at the part's own
        shape and broadcast over the others' leading dims. A part shared by a group of inputs
        (shape (*B, 1, d_j) beside (*B, G, d_x)) is multiplied once, not once per input: the
        embedding method's q(x, e(I)) (modularity paper, Sec. 2)."""
        widths = [int(p.shape[-1]) for p in parts]
        if not parts or sum(widths) != self.sizes[0]:
            raise ValueError(
                f"parts: expected tensors whose last dims sum to {self.sizes[0]}, got {widths}"
            )
        try:
            torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
        except RuntimeError:
            raise ValueError(
                "parts: expected leading dims that broadcast, got "
                f"{[tuple(p.shape) for p in parts]}"
            ) from None
        if self.layout.batch_shape(params) != torch.Size():
            raise ValueError("params: forward_concat takes one unbatched parameter set")
        w, b = params["fc0.weight"].split(widths, dim=1), params.get("fc0.bias")
        ntk = self.parameterization == "ntk"
        h = F.linear(parts[-1], w[-1], None if ntk else b)  # the bias once, on the last part
        for p, wj in zip(parts[:-1], w[:-1], strict=True):
            h = F.linear(p, wj) + h
        h = self._post(self._affine(h, b, 0) if ntk else h, 0)
        return self._layers(h, params, 1)

    def forward_fused_head(
        self,
        x: Tensor,
        features: Tensor,
        weights: Sequence[Tensor],
        biases: Sequence[Tensor],
        scale: float,
    ) -> Tensor:
        """One x per weight set: (W1 x)_o = Σ_k e_k Σ_i A[o,i,k] x_i + Σ_i c[o,i] x_i, so x is
        contracted with fc0's block A of the head first (no (B, o, i) tensor); the remaining
        layers run batched on their generated weights."""
        if x.shape[-1] != self.sizes[0]:
            raise ValueError(f"x: expected shape (..., {self.sizes[0]}), got {tuple(x.shape)}")
        if self.validate_inputs:
            check_finite(x, "x")
        batch = x.shape[:-1]
        xb = x.reshape(-1, self.sizes[0])
        e = features.reshape(xb.shape[0], -1)  # (B, d_k)
        o, i = self.sizes[1], self.sizes[0]
        a1, c1 = weights[0], biases[0]
        y = torch.matmul(xb.unsqueeze(0), a1.view(o, i, -1))  # (o, B, d_k)
        h = torch.einsum("obk,bk->bo", y, e)
        if scale != 1.0:
            h = h * scale
        h = h + xb @ c1.view(o, i).T
        specs = self.layout.specs[1:]
        p = {
            spec.name: F.linear(e, w if scale == 1.0 else w * scale, b).reshape(-1, *spec.shape)
            for spec, w, b in zip(specs, weights[1:], biases[1:], strict=True)
        }
        if self.parameterization == "ntk":
            h = h / math.sqrt(i)
        if self.bias:
            h = h + p["fc0.bias"]
        h = self._post(h, 0).unsqueeze(1)  # (B, 1, o)
        for j in range(1, self.depth):
            w = p[f"fc{j}.weight"].transpose(1, 2)
            s = 1.0 / math.sqrt(self.sizes[j]) if self.parameterization == "ntk" else 1.0
            h = torch.bmm(h, w) * s
            if self.bias:
                h = h + p[f"fc{j}.bias"].unsqueeze(1)
            h = self._post(h, j)
        return h.reshape(*batch, *self.out_shape)

    def _forward_batched(self, x: Tensor, params: Params) -> Tensor:
        h = x  # (b, n, d)
        for i in range(self.depth):
            w = params[f"fc{i}.weight"].transpose(1, 2)  # (b, in, out)
            scale = 1.0 / math.sqrt(self.sizes[i]) if self.parameterization == "ntk" else 1.0
            if self.bias:
                h = torch.baddbmm(params[f"fc{i}.bias"].unsqueeze(1), h, w, alpha=scale)
            else:
                h = torch.bmm(h, w) if scale == 1.0 else torch.bmm(h, w) * scale
            h = self._post(h, i)
        return h


class ConvNet(Primary):
    """Conv + max-pool blocks then dense layers (the papers' MNIST targets).

    Each block is conv (``kernel_size``, 'same' padding, stride 1) → activation → max-pool
    (``pool``, ceil mode, like TensorFlow's SAME pooling). Batched parameters run as one grouped
    convolution. Default sizes: the generating-networks paper's target (App. A.6), 20,018 weights.
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = (32, 16),
        hidden: Sequence[int] = (8,),
        out_features: int = 10,
        *,
        kernel_size: int = 5,
        pool: int = 2,
        activation: str = "relu",
        bias: bool = True,
        negative_slope: float = LEAKY_SLOPE,
    ):
        super().__init__()
        if len(in_shape) != 3 or any(int(s) <= 0 for s in in_shape):
            raise ValueError(f"in_shape: expected (channels, height, width), got {tuple(in_shape)}")
        if kernel_size % 2 != 1:
            raise ValueError(
                f"kernel_size: expected an odd int for 'same' padding, got {kernel_size}"
            )
        self.in_shape = tuple(int(s) for s in in_shape)
        self.channels = [int(c) for c in channels]
        self.layered = True
        self.kernel_size, self.pool, self.bias = kernel_size, pool, bias
        self.activation, self.negative_slope = activation, float(negative_slope)
        self.act = activation_fn(activation, negative_slope)
        self.gain = activation_gain(activation, negative_slope)
        specs: list[ParamSpec] = []
        c, h, w = self.in_shape
        k2 = kernel_size * kernel_size
        for i, o in enumerate(self.channels):
            specs.append(
                ParamSpec(
                    f"conv{i}.weight", (o, c, kernel_size, kernel_size), "weight", c * k2, o * k2
                )
            )
            if bias:
                specs.append(ParamSpec(f"conv{i}.bias", (o,), "bias", c * k2, o * k2))
            c = o
            h, w = -(-h // pool), -(-w // pool)
        self.feature_shape = (c, h, w)
        self.dense_sizes = [c * h * w, *[int(s) for s in hidden], int(out_features)]
        for i, (a, b) in enumerate(zip(self.dense_sizes[:-1], self.dense_sizes[1:], strict=True)):
            specs.append(ParamSpec(f"fc{i}.weight", (b, a), "weight", a, b))
            if bias:
                specs.append(ParamSpec(f"fc{i}.bias", (b,), "bias", a, b))
        self.layout = ParamLayout(specs)
        self.out_shape = (int(out_features),)

    def _forward_batched(self, x: Tensor, params: Params, *, reference: bool = False,
                         per_set: bool | None = None) -> Tensor:  # fmt: skip
        """The b parameter sets' conv blocks, on channels-last data and, for a non-decreasing
        activation, with max-pool before it (max commutes with it: the same values, on 4×
        fewer elements). ``per_set`` (default: on CPU) runs each set's blocks as ordinary
        convolutions one set after another, else all sets as one grouped convolution per
        block: on CPU oneDNN's grouped kernels are the slower (the generating paper's training
        step, 32 sets × 32 images, freed memory kept, Intel Xeon: 262-270 vs 319-328 ms at
        one thread, equal at two; ``benchmarks/generative_step.py``, "hyperlab grouped").
        ``reference=True`` is the plain NCHW grouped conv → activation → pool, kept to test
        and benchmark against."""
        b, n = x.shape[:2]
        pool_first = (not reference and self.activation in MONOTONE_ACTIVATIONS
                      and self.negative_slope >= 0)  # fmt: skip
        per_set = (x.device.type == "cpu") if per_set is None else per_set
        convs = [(params[f"conv{i}.weight"], params[f"conv{i}.bias"] if self.bias else None)
                 for i in range(len(self.channels))]  # fmt: skip
        if per_set and not reference:
            # unbind, not indexing: its backward stacks the sets' gradients once
            sets = [list(zip(w.unbind(0), [None] * b if bi is None else bi.unbind(0),
                             strict=True)) for w, bi in convs]  # fmt: skip
            h = torch.stack([self._blocks(x[s], [lay[s] for lay in sets], pool_first)
                             .flatten(1) for s in range(b)])  # fmt: skip
        else:
            # (b, n, C, H, W) -> (n, b*C, H, W): each parameter set is one group of the conv
            grouped = [(w.reshape(-1, *w.shape[2:]), None if bi is None else bi.reshape(-1))
                       for w, bi in convs]  # fmt: skip
            h = x.transpose(0, 1).reshape(n, b * self.in_shape[0], *self.in_shape[1:])
            h = self._blocks(h, grouped, pool_first, reference, b)
            h = h.contiguous().reshape(n, b, -1).transpose(0, 1)
        last = len(self.dense_sizes) - 2
        for i in range(last + 1):
            w = params[f"fc{i}.weight"].transpose(1, 2)
            h = (
                torch.baddbmm(params[f"fc{i}.bias"].unsqueeze(1), h, w)
                if self.bias
                else torch.bmm(h, w)
            )
            if i < last:
                h = self.act(h)
        return h

    def _blocks(self, h: Tensor, convs: Sequence[tuple[Tensor, Tensor | None]],
                pool_first: bool, reference: bool = False, groups: int = 1) -> Tensor:  # fmt: skip
        """The conv blocks on h (n, groups·C, H, W), block i with weight and bias ``convs[i]``
        (one parameter set, or all sets as ``groups`` groups)."""
        for w, bias in convs:
            if not reference:
                h = _channels_last(h)
                if groups > 1:
                    w = w.contiguous(memory_format=torch.channels_last)
            h = F.conv2d(h, w, bias, padding=self.kernel_size // 2, groups=groups)
            if pool_first:
                h = self.act(F.max_pool2d(h, self.pool, ceil_mode=True))
            else:
                h = F.max_pool2d(self.act(h), self.pool, ceil_mode=True)
        return h


def _channels_last(h: Tensor) -> Tensor:
    """``h`` in channels-last memory. With one channel both layouts are the same memory, but
    conv2d reads the strides to choose its output's layout (NCHW for NCHW-like strides, and
    pooling is ~5x slower there), so the channel stride is set to 1: a view, no copy."""
    h = h.contiguous(memory_format=torch.channels_last)
    if h.shape[1] == 1 and h.stride(1) != 1:
        h = h.as_strided(h.shape, (h.stride(0), 1, h.stride(2), h.stride(3)))
    return h


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalars in a module: N_f, N_e, N_q of the modularity paper."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
