"""What crosses between a check (trusted) and the process that runs a learner's answers (untrusted).

Towards the answers, arguments travel as ordinary pickles: the answer process may trust the checks.
Back from the answers, nothing is unpickled as objects: :func:`encode` turns results into a tree of
plain values (None, bool, int, float, complex, str, bytes, lists, tuples and dicts of those, tagged
with a kind), :func:`dumps` pickles that tree, and :func:`loads` reads it with an unpickler that
refuses every class, so a reply cannot run code in the checking process. :func:`decode` then rebuilds
arrays, tensors, tables and figures from the tree with the checks' own code.
"""

from __future__ import annotations

import io
import math
import pickle
import sys
import types
from pathlib import PurePath
from typing import Any

MAX_REPLY = 512 * 2**20  # bytes: a reply larger than this is refused
MAX_ITEMS = 2_000_000    # nodes in one reply
_SAFE_GLOBALS = {("builtins", "complex"), ("builtins", "bytearray"), ("builtins", "set"), ("builtins", "frozenset")}


class WireError(Exception):
    """A reply that is not a valid encoded tree (too large, or holding anything but plain values)."""


# --- towards the answers: pickles, with generators and gradients kept ------------------------------------

def dumps_request(obj: Any) -> bytes:
    """Pickle ``obj`` for the answer process; torch generators keep their state, parameters their grad."""
    buffer = io.BytesIO()
    _RequestPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


class _RequestPickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        torch = _torch()
        if torch is not None:
            if isinstance(obj, torch.Generator):
                return _generator, (obj.get_state(),)
            if isinstance(obj, torch.nn.Parameter):
                grad = None if obj.grad is None else obj.grad.detach().clone()
                return _parameter, (obj.detach().clone(), obj.requires_grad, grad)
        return NotImplemented


def _generator(state: Any) -> Any:
    import torch
    generator = torch.Generator()
    generator.set_state(state)
    return generator


def _parameter(data: Any, requires_grad: bool, grad: Any) -> Any:
    import torch
    parameter = torch.nn.Parameter(data, requires_grad=requires_grad)
    parameter.grad = grad
    return parameter


def _torch() -> types.ModuleType | None:
    import sys
    return sys.modules.get("torch")


# --- back from the answers: a tree of plain values -------------------------------------------------------

def encode(obj: Any, depth: int = 0) -> Any:
    """A plain, tagged tree describing ``obj`` (runs in the answer process)."""
    if depth > 30:
        return ("opaque", type(obj).__name__, "nested too deeply")
    if obj is None or isinstance(obj, bool):
        return ("value", obj if obj is None else bool(obj))
    if isinstance(obj, str):
        return ("value", str(obj))
    if isinstance(obj, (bytes, bytearray)):
        return ("value", bytes(obj))
    if isinstance(obj, int):
        return ("value", int(obj))
    if isinstance(obj, float):
        return ("value", float(obj))
    if isinstance(obj, complex):
        return ("value", complex(obj))
    if isinstance(obj, (list, tuple, set, frozenset)):
        kind = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}.get(type(obj), "list")
        if isinstance(obj, tuple) and type(obj) is not tuple and hasattr(obj, "_fields"):
            kind = "tuple"  # a namedtuple travels as a plain tuple
        return (kind, [encode(v, depth + 1) for v in obj])
    if isinstance(obj, dict):
        return ("dict", [(encode(k, depth + 1), encode(v, depth + 1)) for k, v in obj.items()])
    if isinstance(obj, PurePath):
        return ("path", str(obj))
    if isinstance(obj, types.SimpleNamespace):
        return ("namespace", [(k, encode(v, depth + 1)) for k, v in vars(obj).items()])
    import numpy as np
    if isinstance(obj, np.generic):
        item = obj.item()
        return encode(item, depth + 1) if isinstance(item, (bool, int, float, complex, str, bytes)) else \
            ("opaque", f"numpy.{type(obj).__name__}", _safe_repr(obj))
    if isinstance(obj, np.ndarray):
        return _encode_array(obj, depth)
    torch = _torch()
    if torch is not None:
        if isinstance(obj, torch.Tensor):
            return _encode_tensor(obj)
        if isinstance(obj, torch.nn.Module):
            return ("module", type(obj).__name__, [(name, _encode_tensor(t)) for name, t in obj.state_dict().items()],
                    [(name, None if p.grad is None else _encode_tensor(p.grad)) for name, p in obj.named_parameters()])
        if isinstance(obj, torch.Generator):
            return ("generator", _encode_tensor(obj.get_state()))
    pandas = _module("pandas")
    if pandas is not None:
        if isinstance(obj, pandas.DataFrame):
            return ("dataframe", [encode(c, depth + 1) for c in obj.columns], _encode_index(obj.index, depth),
                    [_encode_values(obj.iloc[:, k], depth) for k in range(obj.shape[1])])
        if isinstance(obj, pandas.Series):
            return ("series", encode(obj.name, depth + 1), _encode_index(obj.index, depth), _encode_values(obj, depth))
        if isinstance(obj, pandas.Index):
            return _encode_index(obj, depth)
    matplotlib_figure = _module("matplotlib.figure")
    if matplotlib_figure is not None and isinstance(obj, matplotlib_figure.Figure):
        return ("figure", _describe_figure(obj))
    return ("opaque", f"{type(obj).__module__}.{type(obj).__qualname__}", _safe_repr(obj))


def _module(name: str) -> types.ModuleType | None:
    import sys
    return sys.modules.get(name)


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)[:200]
    except Exception:  # a learner's __repr__ may raise anything
        return "<unprintable>"


def _encode_array(array: Any, depth: int) -> Any:
    import numpy as np
    array = np.asarray(array)
    if array.dtype.kind in "biufcmMSU?":
        shape = list(array.shape)  # before ascontiguousarray, which makes a 0-d array 1-d
        return ("ndarray", array.dtype.str, shape, np.ascontiguousarray(array).tobytes())
    return ("ndarray_obj", list(array.shape), [encode(v, depth + 1) for v in array.ravel().tolist()])


def _encode_tensor(tensor: Any) -> Any:
    import torch
    data = tensor.detach().cpu().contiguous()
    raw = data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b""
    return ("tensor", str(data.dtype).removeprefix("torch."), list(data.shape), raw, bool(tensor.requires_grad))


def _encode_values(series: Any, depth: int) -> Any:
    return ("values", str(series.dtype), _encode_array(series.to_numpy(), depth + 1))


def _encode_index(index: Any, depth: int) -> Any:
    return ("index", encode(index.name, depth + 1), str(index.dtype), _encode_array(index.to_numpy(), depth + 1))


def _describe_figure(fig: Any) -> dict:
    """What a check can look at in a figure: panels, their images, lines, titles, legends and colorbars."""
    import numpy as np

    def texts(legend: Any) -> list[str]:
        return [t.get_text() for t in legend.get_texts()] if legend is not None else []

    axes = []
    for ax in fig.axes:
        images = []
        for image in ax.get_images():
            data = image.get_array()
            mask = np.ma.getmaskarray(data) if data is not None else None
            images.append({"array": encode(np.ma.getdata(data) if data is not None else None),
                           "mask": encode(mask if mask is not None and mask.any() else None),
                           "cmap": image.get_cmap().name, "clim": [float(v) if v is not None else None
                                                                  for v in image.get_clim()],
                           "interpolation": image.get_interpolation()})
        lines = [{"x": encode(np.asarray(line.get_xdata(), dtype=float)),
                  "y": encode(np.asarray(line.get_ydata(), dtype=float)), "label": str(line.get_label())}
                 for line in ax.get_lines()]
        axes.append({"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                     "images": images, "lines": lines, "legend": texts(ax.get_legend()),
                     "colorbar": bool(getattr(ax, "_colorbar", None)), "visible_axis": ax.axison,
                     "position": [float(v) for v in ax.get_position().bounds]})
    suptitle = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    return {"suptitle": suptitle, "axes": axes, "legends": [texts(legend) for legend in fig.legends],
            "size": [float(v) for v in fig.get_size_inches()]}


def dumps(tree: Any) -> bytes:
    return pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return {"complex": complex, "bytearray": bytearray, "set": set, "frozenset": frozenset}[name]
        raise WireError(f"the reply holds an object of class {module}.{name}; only plain values may come back")


def loads(data: bytes) -> Any:
    """Read an encoded tree (in the checking process): plain values only, or WireError."""
    if len(data) > MAX_REPLY:
        raise WireError(f"the reply is {len(data) / 2**20:.0f} MiB, more than the {MAX_REPLY // 2**20} MiB allowed")
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except WireError:
        raise
    except Exception as err:  # a truncated or garbled reply
        raise WireError(f"unreadable reply ({type(err).__name__}: {err})") from None


# --- decoding, in the checking process ---------------------------------------------------------------------

class Opaque:
    """Something that came back but cannot be rebuilt here (an object of the learner's own class)."""

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.text}>"


def decode(tree: Any, template: Any = None) -> Any:
    """Rebuild the value an encoded tree describes; ``template`` (the argument sent) rebuilds modules."""
    counter = [0]
    return _decode(tree, template, counter)


def _decode(tree: Any, template: Any, counter: list[int]) -> Any:
    counter[0] += 1
    if counter[0] > MAX_ITEMS:
        raise WireError("the reply holds too many values")
    if not isinstance(tree, tuple) or not tree or not isinstance(tree[0], str):
        raise WireError("malformed reply")
    kind = tree[0]
    if kind == "value":
        value = tree[1]
        if value is not None and not isinstance(value, (bool, int, float, complex, str, bytes)):
            raise WireError("malformed value")
        return value
    if kind in ("list", "tuple", "set", "frozenset"):
        items = tree[1]
        templates = list(template) if isinstance(template, (list, tuple)) and len(template) == len(items) else \
            [None] * len(items)
        values = [_decode(v, t, counter) for v, t in zip(items, templates)]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](values)
    if kind == "dict":
        result = {}
        for key_tree, value_tree in tree[1]:
            key = _decode(key_tree, None, counter)
            sub = template.get(key) if isinstance(template, dict) and _hashable(key) else None
            result[key] = _decode(value_tree, sub, counter)
        return result
    if kind == "path":
        from pathlib import Path
        return Path(str(tree[1]))
    if kind == "namespace":
        return types.SimpleNamespace(**{str(k): _decode(v, getattr(template, str(k), None), counter)
                                        for k, v in tree[1]})
    if kind == "ndarray":
        return _decode_array(tree)
    if kind == "ndarray_obj":
        import numpy as np
        shape, items = tree[1], tree[2]
        array = np.empty(len(items), dtype=object)
        for k, item in enumerate(items):
            array[k] = _decode(item, None, counter)
        return array.reshape(shape)
    if kind == "tensor":
        return _decode_tensor(tree)
    if kind == "module":
        return _decode_module(tree, template, counter)
    if kind == "generator":
        import torch
        generator = torch.Generator()
        generator.set_state(_decode_tensor(tree[1]))
        return generator
    if kind == "dataframe":
        return _decode_dataframe(tree, counter)
    if kind == "series":
        import pandas as pd
        index = _decode_index(tree[2], counter)
        return _series(tree[3], counter, index=index, name=_decode(tree[1], None, counter))
    if kind == "index":
        return _decode_index(tree, counter)
    if kind == "figure":
        return _rebuild_figure(tree[1], counter)
    if kind == "opaque":
        return Opaque(str(tree[1]), str(tree[2]))
    raise WireError(f"unknown kind {kind!r} in the reply")


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _decode_array(tree: Any) -> Any:
    import numpy as np
    _, dtype, shape, raw = tree
    dtype = np.dtype(str(dtype))
    if dtype.kind not in "biufcmMSU?":
        raise WireError(f"array of dtype {dtype} refused")
    count = math.prod(shape)
    if count * dtype.itemsize != len(raw):
        raise WireError("array size does not match its data")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _decode_tensor(tree: Any) -> Any:
    import torch
    _, dtype_name, shape, raw, requires_grad = tree
    dtype = getattr(torch, str(dtype_name), None)
    if not isinstance(dtype, torch.dtype):
        raise WireError(f"tensor of dtype {dtype_name!r} refused")
    element = torch.empty((), dtype=dtype).element_size()
    if math.prod(shape) * element != len(raw):
        raise WireError("tensor size does not match its data")
    tensor = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape).clone() if raw else \
        torch.empty(shape, dtype=dtype)
    if requires_grad and (tensor.is_floating_point() or tensor.is_complex()):
        tensor.requires_grad_(True)
    return tensor


def _decode_module(tree: Any, template: Any, counter: list[int]) -> Any:
    """A copy of ``template`` (the module sent) holding the weights, buffers and gradients that came back."""
    import copy

    import torch
    _, type_name, state, grads = tree
    if not isinstance(template, torch.nn.Module):
        return Opaque(str(type_name), "a module")
    module = copy.deepcopy(template)
    values = {str(name): _decode_tensor(t).detach() for name, t in state}
    try:
        module.load_state_dict(values, strict=True)
    except (RuntimeError, KeyError) as err:
        return Opaque(str(type_name), f"a module whose weights no longer fit ({str(err).splitlines()[0][:120]})")
    parameters = dict(module.named_parameters())
    for name, grad in grads:
        if str(name) in parameters:
            parameters[str(name)].grad = None if grad is None else _decode_tensor(grad).detach()
    return module


def _series(tree: Any, counter: list[int], **kwargs: Any) -> Any:
    import pandas as pd
    _, dtype, values_tree = tree
    values = _decode(values_tree, None, counter)
    try:
        return pd.Series(values, dtype=str(dtype), **kwargs)
    except (TypeError, ValueError):  # a dtype pandas cannot rebuild from its name: let it infer
        return pd.Series(values, **kwargs)


def _decode_index(tree: Any, counter: list[int]) -> Any:
    import pandas as pd
    _, name, dtype, values_tree = tree
    values = _decode(values_tree, None, counter)
    try:
        return pd.Index(values, dtype=str(dtype), name=_decode(name, None, counter))
    except (TypeError, ValueError):
        return pd.Index(values, name=_decode(name, None, counter))


def _decode_dataframe(tree: Any, counter: list[int]) -> Any:
    import pandas as pd
    _, columns, index_tree, values = tree
    index = _decode_index(index_tree, counter)
    names = [_decode(c, None, counter) for c in columns]
    data = [_series(v, counter, index=index) for v in values]
    frame = pd.concat(data, axis=1, ignore_index=True) if data else pd.DataFrame(index=index)
    frame.columns = pd.Index(names) if names else frame.columns
    return frame


def _colormap(name: str) -> Any:
    """The colour map called ``name`` here, or a stand-in carrying that name (one the learner registered)."""
    import matplotlib
    from matplotlib.colors import ListedColormap

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        return ListedColormap(["#000000", "#ffffff"], name=name)


def _rebuild_figure(record: dict, counter: list[int]) -> Any:
    """A real matplotlib Figure with the panels, images, lines, titles and legends the record lists."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=tuple(record.get("size") or (6, 4)))
    for spec in record["axes"]:
        ax = fig.add_axes(spec.get("position") or [0, 0, 1, 1])
        for image in spec["images"]:
            array = _decode(image["array"], None, counter)
            mask = _decode(image["mask"], None, counter)
            if mask is not None:
                import numpy as np
                array = np.ma.masked_array(array, mask=mask)
            vmin, vmax = (image.get("clim") or [None, None])[:2]
            ax.imshow(array, cmap=_colormap(str(image["cmap"])), vmin=vmin, vmax=vmax,
                      interpolation=str(image.get("interpolation") or "nearest"))
        for line in spec["lines"]:
            ax.plot(_decode(line["x"], None, counter), _decode(line["y"], None, counter), label=str(line["label"]))
        ax.set_title(str(spec["title"]))
        ax.set_xlabel(str(spec["xlabel"]))
        ax.set_ylabel(str(spec["ylabel"]))
        if spec["legend"]:
            ax.legend(handles=[Patch(label=str(t)) for t in spec["legend"]])
        if spec.get("colorbar"):
            ax._colorbar = True  # what the check reads: this panel is a colorbar
        if not spec.get("visible_axis", True):
            ax.set_axis_off()
    for texts in record.get("legends", []):
        fig.legend(handles=[Patch(label=str(t)) for t in texts])
    if record.get("suptitle"):
        fig.suptitle(str(record["suptitle"]))
    return fig


def tensors_in(value: Any) -> list:
    """Every torch tensor in a nest of lists, tuples and dicts (none if torch was never imported)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    return []
