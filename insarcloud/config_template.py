"""A commented YAML template of the area-job config, generated from the pydantic models in :mod:`insarcloud.config`.

``insarcloud config --template`` prints it (MintPy's ``smallbaselineApp.py -H``). Every key is written with its
default value; above it, a comment carries the field's description (which states the unit), its allowed
values (``Literal`` choices) and its bounds. Nothing here is a hand-written copy of the models, so a new field
or a changed default shows up in the template by itself. Keys without a default (the area, the frames, the
URLs) get an example value, marked ``REQUIRED``; the template therefore loads into a valid config whose other
values equal the models' defaults (tests/test_config_template.py).
"""

from __future__ import annotations

import textwrap
import types
import typing
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = ["EXAMPLE_VALUES", "template_yaml"]

#: Example values for keys that have no default (dotted paths). ``frames`` stands for "frames or
#: frame_index_url": the models require exactly one of them.
EXAMPLE_VALUES: dict[str, Any] = {
    "area.name": "my-area",
    "area.bbox": [-91.6, -1.0, -90.8, -0.2],
    "frames": ["106A_09048_000909"],
    "source_url": "s3://licsar-products",
    "output_url": "s3://my-results",
}

_BOUND_NAMES = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "min length"),
                ("max_length", "max length"), ("pattern", "pattern"))


def _literal_choices(annotation: Any) -> list[Any]:
    """Allowed values of a ``Literal`` (possibly inside ``X | None`` or ``list[...]``)."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    out: list[Any] = []
    for arg in typing.get_args(annotation):
        out += [c for c in _literal_choices(arg) if c not in out]
    return out


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (directly or as ``Model | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    return None


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a ``list[Model]`` field's items, else None."""
    if typing.get_origin(annotation) is list:
        (arg,) = typing.get_args(annotation)
        return arg if isinstance(arg, type) and issubclass(arg, BaseModel) else None
    return None


def _bounds(info: FieldInfo) -> list[str]:
    out = []
    for meta in info.metadata:
        for attr, label in _BOUND_NAMES:
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{label} {value}")
    return out


def _type_name(annotation: Any) -> str:
    """A short readable type: ``[float, float, float, float] | null``, ``list of str``, ``int``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is tuple:
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None if info.default is PydanticUndefined else info.default


def _scalar(value: Any) -> str:
    """One-line YAML of a value (flow style for lists and mappings)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _comment_lines(info: FieldInfo, annotation: Any, required: bool) -> list[str]:
    lines = textwrap.wrap(info.description or "", 108)
    choices = _literal_choices(annotation)
    facts = []
    if choices:
        facts.append("one of: " + ", ".join(str(c) for c in choices))
    else:
        facts.append(f"type: {_type_name(annotation)}")
    facts += _bounds(info)
    if required:
        facts.append("REQUIRED (no default; the value below is an example)")
    elif _model_of(annotation) is not None and _default(info) is not None:
        pass  # the nested keys below carry their own defaults
    else:
        facts.append(f"default: {_scalar(_default(info))}")
    lines += textwrap.wrap("; ".join(facts), 108, break_long_words=False, break_on_hyphens=False)
    return [line for line in lines if line]


def _emit(model: type[BaseModel], indent: int, prefix: str, out: list[str]) -> None:
    pad = "  " * indent
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = info.annotation
        sub = _model_of(annotation)
        required = info.is_required()
        default = _default(info)
        for line in _comment_lines(info, annotation, required or path in EXAMPLE_VALUES):
            out.append(f"{pad}# {line}")
        item = _list_item_model(annotation)
        if item is not None:
            out.append(f"{pad}# each item has the keys:")
            for key, sub_info in item.model_fields.items():
                facts = [sub_info.description or "", *_bounds(sub_info)]
                out.append(f"{pad}#   {key}: " + "; ".join(f for f in facts if f))
        if path == "frame_index_url":
            out.append(f"{pad}# (give frames or frame_index_url, not both)")
        if sub is not None and default is not None:
            out.append(f"{pad}{name}:")
            _emit(sub, indent + 1, f"{path}.", out)
        elif sub is not None and required:
            out.append(f"{pad}{name}:")
            _emit(sub, indent + 1, f"{path}.", out)
        else:
            value = EXAMPLE_VALUES.get(path, default)
            out.append(f"{pad}{name}: {_scalar(value)}")
        if indent == 0:
            out.append("")


def template_yaml() -> str:
    """The commented YAML template of :class:`insarcloud.config.AreaJobConfig` (every key, its default)."""
    from insarcloud.config import AreaJobConfig

    out = [
        "# insarcloud area-job configuration (insarcloud run CONFIG.yaml), generated by `insarcloud config --template`",
        "# from the models in insarcloud/config.py. Each key shows its default; REQUIRED keys show an example.",
        "# Unknown keys are errors. Credentials never go here: they come from the environment",
        "# (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a Kubernetes Secret, IRSA or workload identity).",
        "",
    ]
    _emit(AreaJobConfig, 0, "", out)
    return "\n".join(out).rstrip() + "\n"
