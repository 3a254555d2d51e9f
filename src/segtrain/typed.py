"""Typed settings on pydantic with one-sentence errors: the machinery under :mod:`segtrain.config`
(and :class:`segtrain.record.PredictionRecord`).

A :func:`section` is a pydantic dataclass (``validate_assignment``, ``extra="forbid"``) whose fields
declare their type and bounds (``lr: Float = field(5e-5, gt=0)``); constructing one, assigning a
field and ``dataclasses.replace`` check them. :func:`config_error` is the one place that turns
pydantic's errors into one :class:`~segtrain.errors.ConfigError` sentence naming the setting (an
unknown key with the closest valid name); :func:`field_bounds` tells a form a field's range and
choices.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import types
import typing
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BeforeValidator, Field, Strict
from pydantic_core import PydanticCustomError

from segtrain.errors import ConfigError

# ----------------------------------------------------------------------------------------------
# field types: strict (a string is not a number, 1 is not true), as the YAML and the panels give them


def _integral(value: Any) -> Any:
    """3.0 (a YAML ``3.0``, a spin box's float) is the integer 3."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def invalid(text: str) -> PydanticCustomError:
    """A check's sentence (completing ``<setting> ...``) as pydantic's error; :func:`config_error` says it."""
    return PydanticCustomError("segtrain", "{said}", {"said": text})


def checked(problem: typing.Callable[[Any], str | None]) -> AfterValidator:
    """A validator from a function that says what is wrong with a value (completing ``<setting> ...``)."""
    def validate(value):
        said = problem(value) if value is not None else None
        if said:
            raise invalid(said)
        return value
    return AfterValidator(validate)


@dataclasses.dataclass(frozen=True)
class Says:
    """A field's own sentence for a value out of its bounds or choices (completing ``<setting> ...``;
    ``, not VALUE.`` follows); without it the sentence is made from the bounds."""

    text: str


Int = Annotated[int, BeforeValidator(_integral), Strict()]
Float = Annotated[float, Strict()]  # an integer is accepted (as a float); NaN and infinity are not
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Positive = Annotated[Int, Field(gt=0)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegative = Annotated[Int, Field(ge=0)]
AtLeastOne = Annotated[Int, Field(ge=1)]
Confidence = Annotated[Float, Field(ge=0.5, le=1)]

_SECTION = pydantic.ConfigDict(validate_assignment=True, extra="forbid", allow_inf_nan=False)


def section(cls: type | None = None, *, frozen: bool = False):
    """A config section: a pydantic dataclass whose construction and assignments raise
    :class:`ConfigError` with one sentence (``segment.probability_threshold must be between 0 and 1,
    not 1.5.``), named from the class's ``_where``."""
    def make(cls):
        cls = pydantic.dataclasses.dataclass(cls, config=_SECTION, frozen=frozen)
        init, setattr_ = cls.__init__, cls.__setattr__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            try:
                init(self, *args, **kwargs)
            except pydantic.ValidationError as error:
                raise config_error(error, type(self), kwargs, getattr(self, "_where", "")) from None

        def __setattr__(self, name, value):
            try:
                setattr_(self, name, value)
            except pydantic.ValidationError as error:
                raise config_error(error, type(self), {name: value}, self._where) from None

        cls.__init__ = __init__
        if not frozen:
            cls.__setattr__ = __setattr__
        return cls
    return make(cls) if cls is not None else make


def field(default: Any, **kwargs) -> Any:
    """A field with a default (a list or mapping is copied per instance) and pydantic's bounds."""
    if isinstance(default, (list, dict)):
        value = default
        return Field(default_factory=lambda: copy.deepcopy(value), **kwargs)
    if callable(default) and isinstance(default, type):
        return Field(default_factory=default, **kwargs)
    return Field(default, **kwargs)


# ----------------------------------------------------------------------------------------------
# pydantic's errors as one sentence


def _args(tp: Any) -> tuple:
    return typing.get_args(tp)


def _plain(tp: Any) -> Any:
    """``tp`` without Annotated wrappers and without None when one other type remains (``X | None`` -> X)."""
    while typing.get_origin(tp) is Annotated:
        tp = _args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        given = [a for a in _args(tp) if a is not type(None)]
        if len(given) == 1:
            return _plain(given[0])
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _type_name(_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in _args(tp))
    if _is_union(tp):
        args = [a for a in _args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is list:
        (inner,) = _args(tp) or (Any,)
        return f"a list of {_type_name(inner)}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _metadata(tp: Any, info: Any = None) -> list:
    """The metadata (bounds, :class:`Says`, validators) of a field: its FieldInfo's and its type's
    Annotated ones, through ``X | None`` and into a union's first member (not into list entries)."""
    out = list(getattr(info, "metadata", []))
    while True:
        if typing.get_origin(tp) is Annotated:
            for item in _args(tp)[1:]:
                out.extend(item.metadata if isinstance(item, pydantic.fields.FieldInfo) else [item])
            tp = _args(tp)[0]
        elif _is_union(tp):
            given = [a for a in _args(tp) if a is not type(None)]
            tp = given[0]  # the scalar of a union like Confidence | list[Confidence]
        else:
            return out


_TYPE_WORDS = {"int_type": "an integer", "int_from_float": "an integer", "int_parsing": "an integer",
               "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
               "string_type": "a string", "bool_type": "true or false", "bool_parsing": "true or false"}
_VALUE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "literal_error",
                 "too_short", "too_long"}


@dataclasses.dataclass
class _Place:
    """Where an error's location points: the setting it names and the field it is in."""

    where: str  # e.g. data.train[0].raw, data.voxel_size[0]
    tp: Any  # the declared type there
    value: Any  # the given value there (None where not given)
    field_where: str = ""  # the field's own name (data.voxel_size), its type, FieldInfo and value
    field_tp: Any = None
    field_info: Any = None
    field_value: Any = None
    in_list: bool = False  # the location went into the field's list entries
    union: Any = None  # the branch of a union (X | Y) the location names
    key: bool = False  # the location names a mapping's key


def _child(value: Any, part: Any) -> Any:
    if isinstance(part, int):
        return value[part] if isinstance(value, (list, tuple)) and -len(value) <= part < len(value) else None
    if isinstance(value, dict):
        return value.get(part)
    return getattr(value, part, None) if dataclasses.is_dataclass(value) else None


def _place(cls: type, loc: tuple, given: Any, where: str) -> _Place:
    """Follow an error's location from ``cls`` (named ``where``, given ``given``) to the setting it names."""
    place = _Place(where, cls, given)
    for part in loc:
        tp = _plain(place.tp)
        join = f"{place.where}.{part}" if place.where else str(part)
        if dataclasses.is_dataclass(tp) and isinstance(part, str) and part in tp.__pydantic_fields__:
            place = _Place(join, _hints(tp)[part], _child(place.value, part))
            place.field_where, place.field_tp, place.field_value = place.where, place.tp, place.value
            place.field_info = tp.__pydantic_fields__[part]
        elif isinstance(part, int) and typing.get_origin(tp) is list:
            place.where, place.tp, place.value = f"{place.where}[{part}]", _args(tp)[0], _child(place.value, part)
            place.in_list = True
        elif _is_union(tp):
            place.union = part
            break
        else:
            place.key = part == "[key]"
            break
    return place


def _as_declared(value: Any, tp: Any) -> Any:
    """``value`` as the field stores it (an integer given for a number is a float), for the sentence."""
    tp = _plain(tp)
    if _is_union(tp):
        lists = [a for a in _args(tp) if typing.get_origin(_plain(a)) is list]
        tp = lists[0] if lists and isinstance(value, (list, tuple)) else _args(tp)[0]
        return _as_declared(value, tp)
    if typing.get_origin(tp) is list and isinstance(value, (list, tuple)):
        return [_as_declared(v, _args(tp)[0]) for v in value]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _bound(metadata: list, open_: str, closed: str) -> tuple[Any, bool]:
    """The first bound of kind gt/ge (or lt/le) in ``metadata``: (value or None, whether excluded)."""
    for m in metadata:
        if hasattr(m, open_) or hasattr(m, closed):
            return (getattr(m, open_), True) if hasattr(m, open_) else (getattr(m, closed), False)
    return None, False


def _bound_words(metadata: list) -> str:
    """``must be ...`` from a field's bounds: positive, N or more, between A and B."""
    (low, low_open), (high, _) = _bound(metadata, "gt", "ge"), _bound(metadata, "lt", "le")
    if high is not None:
        return f"must be between {low} and {high}"
    return "must be positive" if low_open and low == 0 else f"must be {low} or more"


def _sentence(error: dict, cls: type, given: Any, where: str) -> str:
    kind, loc = error["type"], error["loc"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden", "no_such_attribute"):
        owner = _place(cls, loc[:-1], given, where)
        names = list(_plain(owner.tp).__pydantic_fields__)
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        at = owner.where
        return (f"Unknown setting {at + '.' if at else ''}{loc[-1]!s}{f' (did you mean {close[0]}?)' if close else ''}; "
                f"valid settings{' in ' + at if at else ''} are: {', '.join(names)}.")
    place = _place(cls, loc, given, where)
    if kind == "segtrain":
        return f"{place.where} {error['ctx']['said']}"
    if kind in _VALUE_ERRORS:
        metadata = _metadata(place.field_tp, place.field_info)
        says = next((m.text for m in metadata if isinstance(m, Says)), None)
        shown = _as_declared(place.field_value, place.field_tp)
        if says:
            return f"{place.field_where} {says}, not {shown!r}."
        if kind == "literal_error":
            return f"{place.where} must be {_type_name(place.tp)}, not {error['input']!r}."
        if place.in_list:
            low = error["ctx"].get("gt", error["ctx"].get("ge"))
            words = "positive entries only" if "gt" in error["ctx"] and low == 0 else f"entries of {low} or more only"
            return f"{place.field_where} must have {words}, not {shown!r}."
        return f"{place.field_where} {_bound_words(metadata)}, not {shown!r}."
    if place.union is not None:
        return f"{place.field_where} must be {_type_name(place.field_tp)}, not {place.field_value!r}."
    if place.key or kind == "dict_type":
        return f"{place.field_where} must be a mapping of names to values, not {place.field_value!r}."
    if kind in ("dataclass_type", "dataclass_exact_type", "model_type", "model_attributes_type"):
        return f"{place.where} must be a mapping of settings, not {error['input']!r}."
    if kind == "list_type":
        return f"{place.where} must be {_type_name(_plain(place.tp))}, not {error['input']!r}."
    if kind in _TYPE_WORDS:
        return f"{place.where} must be {_TYPE_WORDS[kind]}, not {error['input']!r}."
    return f"{place.where or 'The configuration'}: {error['msg']}, not {error['input']!r}."


def config_error(error: pydantic.ValidationError, cls: type, given: Any, where: str = "") -> ConfigError:
    """The one sentence for pydantic's first error in ``error`` (from validating ``given`` as
    ``cls``, a section named ``where``): the ConfigError a model validator raised, an unknown key with
    the closest valid name, or the setting, what it must be and the value given."""
    errors = error.errors()
    first = errors[0]
    if first["type"] == "value_error" and isinstance(first.get("ctx", {}).get("error"), ConfigError):
        return first["ctx"]["error"]
    # a union's branches each fail: a branch whose types fitted says why (a bound), else the union's types
    field = _place(cls, first["loc"], given, where)
    if field.union is not None:
        branches: dict[Any, list] = {}
        for e in errors:
            place = _place(cls, e["loc"], given, where)
            if place.field_where == field.field_where:
                branches.setdefault(place.union, []).append(e)
        fitted = [b for b in branches.values() if all(e["type"] in _VALUE_ERRORS or e["type"] == "segtrain" for e in b)]
        first = fitted[0][0] if fitted else first
    return ConfigError(_sentence(first, cls, given, where))


def from_mapping(cls: type, values: Any, where: str = "") -> Any:
    """A section (or any :func:`section` class) from a mapping, checked; raises ConfigError with one
    sentence naming ``where`` and the setting."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of settings, not {values!r}.")
    try:
        return cls.__pydantic_validator__.validate_python(values)
    except pydantic.ValidationError as error:
        raise config_error(error, cls, values, where) from None


@dataclasses.dataclass(frozen=True)
class FieldBounds:
    """A field's range and choices as declared (what a form offers): ``low``/``high`` are None where
    unbounded and excluded where ``low_open``/``high_open`` (gt/lt); ``choices`` are a Literal's."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    optional: bool = False  # None is a value (e.g. "off")


def field_bounds(cls: type, name: str) -> FieldBounds:
    """The declared range (and choices) of ``cls.name``, e.g. ``field_bounds(TrainConfig, "lr")``."""
    tp, info = _hints(cls)[name], cls.__pydantic_fields__[name]
    metadata = _metadata(tp, info)
    (low, low_open), (high, high_open) = _bound(metadata, "gt", "ge"), _bound(metadata, "lt", "le")
    plain = _plain(tp)
    while _is_union(plain):
        plain = _plain([a for a in _args(plain) if a is not type(None)][0])
    choices = _args(plain) if typing.get_origin(plain) is Literal else None
    while typing.get_origin(tp) is Annotated:
        tp = _args(tp)[0]
    optional = _is_union(tp) and type(None) in _args(tp)
    return FieldBounds(low, high, low_open, high_open, choices, optional)


