"""``NamedTuple``, as mypy knows it, built at run time without importing typing.

Every VM start waits for the hook's process, so what its modules cost to import is paid at
every start. On dom0's Python 3.6, importing typing, subscripting its generics in annotations
(each ``Dict[str, Any]`` builds a class) and building a typing or collections named tuple
(each compiles its class from source) cost the hook about 20 ms, twice what the rest of
xsguard costs it to import. So no module of xsguard that dom0 runs (all but the simulator's)
imports typing at run time:

- each imports its typing names under ``if TYPE_CHECKING:``, with ``TYPE_CHECKING = False``
  at run time (mypy takes any variable of that name as True);
- annotations that Python evaluates (a ``def``'s, a class's or a module's) and that name
  typing are strings;
- records subclass this module's ``NamedTuple``, which mypy reads as ``typing.NamedTuple``.

At run time it is a tuple subclass built in one pass over the class's annotations: fields in
order, class attributes as defaults, and what the code uses of a named tuple (positional and
keyword construction, the fields as read-only attributes, ``_fields``, ``_replace``,
``_asdict``, equality, hashing and pickling as tuples, a repr that names the fields, no
``__dict__``, a subclass keeping its parent's fields). On Python 3.6, a record takes about
0.2 us longer to build than a named tuple when its fields are given by position, as the ledger
reads its entries (some 0.03 ms for 150 of them), and about 1.5 us by keyword; generating each
class's ``__new__``, as typing and collections do, would cost 0.1 to 0.3 ms a class at import.

``tests/test_namedtuple.py`` holds it to typing's; ``tests/test_fast_path.py`` checks that a
hook's process never imports typing.
"""

import sys
from operator import itemgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
else:

    def _own_annotations(cls):
        """The annotations of ``cls``'s own body, in order. From 3.10 ``cls.__annotations__`` holds only
        those (3.14 builds it on first use, PEP 649); before, it may be a base class's."""
        if sys.version_info >= (3, 10):
            return cls.__annotations__
        return cls.__dict__.get("__annotations__", {})

    class _RecordType(type):
        """Makes each record: no ``__dict__`` (a misspelt field cannot be set), its fields in the order
        its body annotates them, its class attributes of the same names as their defaults."""

        def __new__(mcs, name, bases, namespace):
            namespace.setdefault("__slots__", ())
            cls = super().__new__(mcs, name, bases, namespace)
            if bases == (tuple,) or NamedTuple not in bases:
                return cls  # NamedTuple itself; a record's subclass keeps its fields, as typing's does
            fields = tuple(_own_annotations(cls))
            defaults = {field: namespace[field] for field in fields if field in namespace}
            if tuple(defaults) != fields[len(fields) - len(defaults):]:
                raise TypeError("%s: a field without a default follows fields with one" % name)
            cls._fields = fields
            cls._field_defaults = defaults
            cls._trailing_defaults = tuple(defaults.values())
            for index, field in enumerate(fields):
                setattr(cls, field, property(itemgetter(index), doc="Alias for field number %d" % index))
            return cls

    class NamedTuple(tuple, metaclass=_RecordType):
        """A tuple whose subclasses declare their fields as annotations, as with ``typing.NamedTuple``."""

        _fields = ()
        _field_defaults = {}
        _trailing_defaults = ()

        def __new__(cls, *args, **kwargs):
            if kwargs:
                args += tuple(cls._from_keywords(len(args), kwargs))
            missing = len(cls._fields) - len(args)
            if missing > len(cls._trailing_defaults):
                raise TypeError("%s() missing argument %r" % (cls.__name__, cls._fields[len(args)]))
            if missing < 0:
                raise TypeError("%s() takes %d arguments, %d given" % (cls.__name__, len(cls._fields), len(args)))
            if missing:
                args += cls._trailing_defaults[-missing:]
            return tuple.__new__(cls, args)

        @classmethod
        def _from_keywords(cls, given, kwargs):
            """The values of the fields after the ``given`` positional ones, from ``kwargs`` or defaults."""
            values = []
            for name in cls._fields[given:]:
                if name in kwargs:
                    values.append(kwargs.pop(name))
                elif name in cls._field_defaults:
                    values.append(cls._field_defaults[name])
                else:
                    raise TypeError("%s() missing argument %r" % (cls.__name__, name))
            if kwargs:
                raise TypeError("%s() got an unexpected argument %r" % (cls.__name__, sorted(kwargs)[0]))
            return values

        def __repr__(self):
            return "%s(%s)" % (type(self).__name__,
                               ", ".join("%s=%r" % pair for pair in zip(self._fields, self)))

        def __getnewargs__(self):
            return tuple(self)

        def _replace(self, **changes):
            replaced = tuple.__new__(type(self), map(changes.pop, self._fields, self))
            if changes:
                raise ValueError("Got unexpected field names: %r" % sorted(changes))
            return replaced

        def _asdict(self):
            return dict(zip(self._fields, self))
