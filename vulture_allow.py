"""Names vulture reports as unused that are used by something it cannot see (``make lint``).

Each is an interface: a signature a caller outside xsguard fixes, or a name the standard
library, pytest or xapi's wire protocol looks up. Anything else vulture reports is dead code.
"""
# ruff: noqa
# flake8: noqa

_ = object()

# signal handlers: (signum, frame) is the signal module's calling convention
signum, frame
# structlog's logger interface: every level name is a method the bound logger may call
critical, debug, exception, fatal, warn, logger
# xapi's calls served by the simulator take xapi's arguments, used or not (VM.start, VM.pool_migrate, ...)
gpu_group, force, paused, start_paused, vdi_map, vif_map, vgpu_map, network
_.__signature__  # inspect.signature reads it: the simulator's XML-RPC dispatch names its arguments
# the standard library's servers and handlers look these up
_.fileno  # select() on an inotify watch
_.address_string, _.log_message, format, daemon_threads, request_queue_size, disable_nagle_algorithm
rpc_paths, protocol_version, _._marshaled_dispatch, dispatch_method, _.logRequests
exc_type, exc_info, tb  # __exit__'s arguments
# pytest's hooks and fixtures, found by name
pytest_configure, pytest_unconfigure, hygiene, _close_sessions, pytestmark, _.tempdir
# typing names used only inside string annotations, which vulture does not read (xsguard/namedtuple.py
# says why the package's evaluated annotations are strings)
MutableMapping, NoReturn, Number
