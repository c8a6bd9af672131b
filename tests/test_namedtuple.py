"""``xsguard.namedtuple.NamedTuple`` behaves as ``typing.NamedTuple`` does wherever xsguard uses one.

Each behaviour is checked on two classes with the same body, one on each base: what typing's
gives is the expected value."""

import json
import operator
import pickle
import types
import typing

import pytest

from xsguard import namedtuple


class TypingEntry(typing.NamedTuple):
    """An entry."""

    vm_uuid: str
    need: int
    domid: "typing.Optional[int]" = None
    how: str = "checked"

    @property
    def charged(self) -> int:
        return self.need * 2

    def named(self) -> str:
        return "%s/%s" % (self.vm_uuid, self.how)


class LeanEntry(namedtuple.NamedTuple):
    """An entry."""

    vm_uuid: str
    need: int
    domid: "typing.Optional[int]" = None
    how: str = "checked"

    @property
    def charged(self) -> int:
        return self.need * 2

    def named(self) -> str:
        return "%s/%s" % (self.vm_uuid, self.how)


BOTH = pytest.mark.parametrize("kind", [TypingEntry, LeanEntry], ids=["typing", "lean"])


def outcome(make: typing.Callable[[], object]) -> typing.Any:
    """What ``make`` returns, or the class of what it raises."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - the exception's class is the outcome compared
        return type(exc)


def test_fields_and_defaults():
    """The fields in declaration order, and the defaults by name."""
    assert (LeanEntry._fields, LeanEntry._field_defaults) == (TypingEntry._fields, TypingEntry._field_defaults)
    assert LeanEntry._fields == ("vm_uuid", "need", "domid", "how")


@pytest.mark.parametrize("args, kwargs", [
    (("a", 3), {}),
    (("a", 3, 7, "seen"), {}),
    (("a",), {"need": 3, "how": "audited"}),
    ((), {"vm_uuid": "a", "need": 3, "domid": 0}),
], ids=["positional", "all-positional", "mixed", "keywords"])
def test_construction_gives_the_same_tuple(args, kwargs):
    """Positional, keyword and mixed construction, with defaults filling the rest."""
    lean, typed = LeanEntry(*args, **kwargs), TypingEntry(*args, **kwargs)
    assert (tuple(lean), lean.vm_uuid, lean.need, lean.domid, lean.how) == \
        (tuple(typed), typed.vm_uuid, typed.need, typed.domid, typed.how)


@pytest.mark.parametrize("args, kwargs", [
    (("a",), {}),
    (("a", 3, 7, "seen", "extra"), {}),
    (("a", 3), {"bogus": 1}),
    (("a", 3), {"vm_uuid": "b"}),
    ((), {"vm_uuid": "a", "how": "seen"}),
], ids=["missing", "too-many", "unknown-keyword", "given-twice", "missing-by-keyword"])
def test_wrong_arguments_raise_type_error(args, kwargs):
    """A missing field, one too many, an unknown name or one given twice: TypeError, as with typing."""
    assert outcome(lambda: LeanEntry(*args, **kwargs)) is outcome(lambda: TypingEntry(*args, **kwargs)) is TypeError


def test_replace_and_asdict():
    """``_replace`` gives a new record of the same class, and refuses an unknown field; ``_asdict`` maps
    fields to values."""
    lean, typed = LeanEntry("a", 3), TypingEntry("a", 3)
    replaced = lean._replace(how="seen", domid=4)
    assert type(replaced) is LeanEntry
    assert tuple(replaced) == tuple(typed._replace(how="seen", domid=4))
    assert lean._asdict() == dict(typed._asdict())
    refused = (ValueError, TypeError)  # typing's is a ValueError before Python 3.13, a TypeError since
    assert outcome(lambda: lean._replace(bogus=1)) in refused  # type: ignore[call-arg]
    assert outcome(lambda: typed._replace(bogus=1)) in refused  # type: ignore[call-arg]


def test_equality_hashing_and_unpacking_are_a_tuples():
    """Equal to the plain tuple of its values (and so to typing's record), hashed as it, unpacked as it."""
    lean, typed = LeanEntry("a", 3, 7), TypingEntry("a", 3, 7)
    assert operator.eq(lean, typed) and lean == ("a", 3, 7, "checked")
    assert hash(lean) == hash(typed)
    assert {lean: 1}[("a", 3, 7, "checked")] == 1
    vm_uuid, need, domid, how = lean
    assert (vm_uuid, need, domid, how, lean[1], lean[-1], len(lean)) == ("a", 3, 7, "checked", 3, "checked", 4)
    assert isinstance(lean, tuple)


def test_repr_and_json():
    """The repr names the fields as typing's does; JSON writes the values as a list."""
    lean, typed = LeanEntry("a", 3), TypingEntry("a", 3)
    assert repr(lean) == repr(typed).replace("TypingEntry", "LeanEntry")
    assert json.dumps(lean) == json.dumps(typed) == '["a", 3, null, "checked"]'


@BOTH
def test_pickles_to_an_equal_record(kind):
    """A pickled record comes back equal and of its class."""
    record = kind("a", 3, None, "seen")
    back = pickle.loads(pickle.dumps(record))
    assert (type(back), back) == (kind, record)


@BOTH
def test_fields_are_read_only(kind):
    """A field cannot be assigned."""
    record = kind("a", 3)
    with pytest.raises(AttributeError):
        record.need = 4
    assert record.need == 3


@BOTH
def test_a_record_has_no_other_attributes(kind):
    """A misspelt field cannot be set: a record has no ``__dict__``."""
    record = kind("a", 3)
    with pytest.raises(AttributeError):
        setattr(record, "nede", 4)  # noqa: B010 - a misspelt field, as code would set it
    assert not hasattr(record, "__dict__")


class TypingChild(TypingEntry):
    """A record's subclass: methods only."""

    def doubled(self) -> int:
        return self.need * 2


class LeanChild(LeanEntry):
    """A record's subclass: methods only."""

    def doubled(self) -> int:
        return self.need * 2


def test_a_records_subclass_keeps_its_fields():
    """A subclass of a record has its parent's fields and defaults, and its own methods."""
    lean, typed = LeanChild("a", 3), TypingChild("a", 3)
    assert (LeanChild._fields, tuple(lean), lean.how, lean.doubled()) == \
        (TypingChild._fields, tuple(typed), typed.how, typed.doubled())
    assert repr(lean) == repr(typed).replace("TypingChild", "LeanChild")


@BOTH
def test_the_class_body_keeps_its_methods_properties_and_docstring(kind):
    """Methods and properties declared next to the fields work on the record."""
    record = kind("a", 3, how="seen")
    assert (record.charged, record.named(), kind.__doc__) == (6, "a/seen", "An entry.")


def test_a_field_without_default_after_one_with_is_refused():
    """As with typing, a field without a default cannot follow one with a default."""
    def body(namespace: typing.Dict[str, object]) -> None:
        namespace.update(__module__=__name__, __annotations__={"a": int, "b": int}, a=1)

    for base in (typing.NamedTuple, namedtuple.NamedTuple):
        with pytest.raises(TypeError):
            types.new_class("Bad", (base,), exec_body=body)
