"""Making a classifier safe to explain with captum, and the small model helpers every method shares.

captum's traps, and what :func:`captum_safe` does about each, on a copy (the caller's model is never
changed):

* an in-place ReLU (fastai's ``ResBlock`` ends in one) can break captum's hooks ("a view ... is
  being modified inplace" under full backward hooks) or hand a layer hook a tensor that changes
  afterwards: every module with an ``inplace`` flag gets it switched off. (captum 0.9's methods used
  here give the same maps on our xresnets either way; the switch costs nothing.);
* Guided Backprop and Guided Grad-CAM hook ``nn.ReLU`` modules only, so a functional ReLU
  (``F.relu``, ``torch.relu``, ``x.relu()`` and their in-place forms) is silently treated as a plain
  gradient: one forward pass finds the modules whose own code calls one, and each such module is
  rewritten (``torch.fx``, its children kept as they are) so that every call goes through its own
  ``nn.ReLU``;
* the copy is in evaluation mode, so batch norm uses its running statistics. Its weights keep
  ``requires_grad``: captum's layer methods (LayerDeepLift, ...) hook activations that only need a
  gradient because the weights do, and asking for the input's gradient computes no weight gradient.

A ReLU module called twice in one forward pass needs nothing: captum hooks each call separately.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from rice_lab.errors import ConfigError

RELU_FUNCTIONS = (F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_)
RELU_METHODS = ("relu", "relu_")
SAFE_FLAG = "rice_lab_captum_safe"  # set on a model captum_safe made, so it is not copied again
Inputs = torch.Tensor | tuple[torch.Tensor, ...]  # a batch, or one batch per input of a model of several


def batch_length(inputs: Inputs) -> int:
    """How many items a batch (or a tuple of batches, one per input) holds."""
    return len(inputs[0]) if isinstance(inputs, tuple) else len(inputs)


def take(inputs: Inputs, start: int, stop: int, device: torch.device | None = None) -> Inputs:
    """Items ``start:stop`` of a batch or of each batch of a tuple (moved to ``device`` if given)."""
    if isinstance(inputs, tuple):
        return tuple(take(x, start, stop, device) for x in inputs)
    part = inputs[start:stop]
    return part if device is None else part.to(device)


def run(model: nn.Module, inputs: Inputs) -> torch.Tensor:
    """``model`` on a batch, or on a tuple of batches as its positional inputs."""
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


class _ReluWatch(TorchFunctionMode):
    """Notes the module on top of ``stack`` whenever a functional ReLU runs outside an ``nn.ReLU``."""

    def __init__(self, stack: list[nn.Module], owners: list[nn.Module]) -> None:
        super().__init__()
        self.stack, self.owners = stack, owners

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in RELU_FUNCTIONS and self.stack and not isinstance(self.stack[-1], nn.ReLU):
            if not any(self.stack[-1] is seen for seen in self.owners):
                self.owners.append(self.stack[-1])
        return func(*args, **(kwargs or {}))


def functional_relu_owners(model: nn.Module, example: Inputs) -> list[str]:
    """Names of the modules of ``model`` whose own forward calls a functional ReLU on ``example``."""
    stack: list[nn.Module] = []
    owners: list[nn.Module] = []
    handles = []

    def leave(module: nn.Module, args, output) -> None:  # a hook that returned a value would replace the output
        stack.pop()

    for module in model.modules():
        handles.append(module.register_forward_pre_hook(lambda m, args: stack.append(m)))
        handles.append(module.register_forward_hook(leave))
    try:
        with torch.no_grad(), _ReluWatch(stack, owners):
            run(model, example)
    finally:
        for handle in handles:
            handle.remove()
    names = {id(module): name for name, module in model.named_modules()}
    return [names[id(module)] for module in owners]


class _ChildrenAsLeaves(fx.Tracer):
    """Traces one module's own forward; its children are called as they are, not traced into."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return True


def _with_relu_modules(module: nn.Module, name: str) -> fx.GraphModule:
    """``module`` rewritten so that each functional ReLU call is a call of its own ``nn.ReLU``."""
    try:
        graph = _ChildrenAsLeaves().trace(module)
    except Exception as err:  # noqa: BLE001 - fx raises many kinds; all mean "cannot rewrite"
        raise ConfigError(f"module {name or '(the model)'} ({type(module).__name__}) calls a functional ReLU that "
                          f"guided methods cannot see, and torch.fx cannot rewrite it ({err}); use nn.ReLU "
                          "modules there") from err
    count = 0
    for node in list(graph.nodes):
        functional = node.op == "call_function" and node.target in RELU_FUNCTIONS
        method = node.op == "call_method" and node.target in RELU_METHODS
        if not (functional or method):
            continue
        relu_name = f"captum_relu_{count}"
        module.add_module(relu_name, nn.ReLU())
        with graph.inserting_after(node):
            replacement = graph.call_module(relu_name, (node.args[0],))
        node.replace_all_uses_with(replacement)
        graph.erase_node(node)
        count += 1
    graph.lint()
    return fx.GraphModule(module, graph, class_name=type(module).__name__)


def captum_safe(model: nn.Module, example: Inputs | None = None) -> nn.Module:
    """An eval-mode copy of ``model`` without the captum traps (see the module docstring).

    ``example`` (a batch the model accepts, a tuple for a model of several inputs) lets the copy's
    functional ReLUs be found and rewritten;
    without it only in-place flags are switched off. A model this function made is returned as is.
    """
    if getattr(model, SAFE_FLAG, False):
        return model
    safe = copy.deepcopy(model).eval()
    for module in safe.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    if example is not None:
        owners = functional_relu_owners(safe, take(example, 0, 1))
        for name in sorted(owners, key=lambda n: -len(n.split("."))):  # innermost first
            rewritten = _with_relu_modules(safe.get_submodule(name), name)
            if name:
                parent, _, child = name.rpartition(".")
                setattr(safe.get_submodule(parent), child, rewritten)
            else:
                safe = rewritten
    setattr(safe, SAFE_FLAG, True)
    return safe


class TwoCameras(nn.Module):
    """A model of both photos of a plant, ``forward(rgb, rgnir)``: each photo goes through its own copy
    of one per-photo network (the same weights), and :meth:`combine` joins the two answers.

    Two copies, not one network called twice, so that every layer exists once per camera: captum's
    layer methods (Grad-CAM) read one activation per input, and ``branch_layers("body")`` names each
    camera's (``rgb.body``, ``rgnir.body``).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.rgb, self.rgnir = copy.deepcopy(network).eval(), copy.deepcopy(network).eval()

    def branch_layers(self, layer: str) -> tuple[str, str]:
        """The name of ``layer`` (a name in the per-photo network) in each camera's copy."""
        return f"rgb.{layer}", f"rgnir.{layer}"

    def combine(self, rgb: torch.Tensor, rgnir: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, rgb: torch.Tensor, rgnir: torch.Tensor) -> torch.Tensor:
        return self.combine(self.rgb(rgb), self.rgnir(rgnir))


def layer_names(model: nn.Module, depth: int = 3) -> list[str]:
    """The model's module names (those up to ``depth`` parts long): what ``layer=`` may name."""
    return [name for name, _ in model.named_modules() if name and len(name.split(".")) <= depth]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; ConfigError naming the available layers if there is none."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        available = ", ".join(layer_names(model))
        raise ConfigError(f"layer={name!r}: no such layer in {type(model).__name__}; available (up to 3 levels "
                          f"deep): {available}") from None


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in evaluation mode for the duration, its own mode restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.train(training)


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights live (CPU for a model without any)."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


@torch.no_grad()
def predict_logits(model: nn.Module, images: Inputs, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``images`` (already normalised; a tuple for a model of several inputs), in batches,
    on the model's device."""
    device = model_device(model)
    with evaluating(model):
        return torch.cat([run(model, take(images, i, i + batch_size, device))
                          for i in range(0, batch_length(images), batch_size)])


def resolve_targets(model: nn.Module, images: Inputs, target: int | Sequence[int] | torch.Tensor | None,
                    ) -> torch.Tensor:
    """Class indices (N,) on the model's device: ``None`` means the model's predicted class."""
    device = model_device(model)
    if target is None:
        return predict_logits(model, images).argmax(1).to(device)
    target = torch.as_tensor(target, dtype=torch.long, device=device)
    if target.ndim == 0:
        target = target.expand(batch_length(images)).clone()
    if target.shape != (batch_length(images),):
        raise ConfigError(f"target of shape {tuple(target.shape)}: give one class index, or one per image "
                          f"({batch_length(images)})")
    classes = predict_logits(model, take(images, 0, 1)).shape[1]
    wrong = target[(target < 0) | (target >= classes)]
    if len(wrong):
        raise ConfigError(f"target {int(wrong[0])}: the model has {classes} classes (0 to {classes - 1})")
    return target


__all__ = ["RELU_FUNCTIONS", "Inputs", "TwoCameras", "batch_length", "captum_safe", "evaluating", "find_layer",
           "functional_relu_owners", "layer_names", "model_device", "predict_logits", "resolve_targets", "run", "take"]
