"""Python 2.7 and 3.x differences, kept in one place.

Every version branch of the package lives here so that the rest of the code
reads the same on both lines.  Native strings at the WSGI boundary follow
PEP 3333: on Python 3 they are ``str`` decoded as ISO-8859-1, on 2.7 they
are byte strings.
"""

from __future__ import absolute_import

import errno
import threading
import time

import six

PY2 = six.PY2

try:
    monotonic = time.monotonic
except AttributeError:  # Python 2.7 has no monotonic clock in the stdlib.
    monotonic = time.time

reraise = six.reraise
indexbytes = six.indexbytes
int2byte = six.int2byte

if PY2:
    def to_native(data):
        """Convert ``bytes`` from the wire to a native string."""
        return data

    def from_native(text):
        """Convert a native string to ``bytes`` for the wire."""
        if isinstance(text, unicode):  # noqa: F821 (Python 2 only)
            return text.encode('latin-1')
        return text

    def is_native(value):
        return isinstance(value, str)

    def thread_error_types():
        import thread
        return (thread.error, RuntimeError)
else:
    def to_native(data):
        """Convert ``bytes`` from the wire to a native string."""
        return data.decode('latin-1')

    def from_native(text):
        """Convert a native string to ``bytes`` for the wire."""
        if isinstance(text, bytes):
            return text
        return text.encode('latin-1')

    def is_native(value):
        return isinstance(value, str)

    def thread_error_types():
        return (RuntimeError,)


def current_thread_is_main():
    """Return True when the caller runs in the interpreter's main thread."""
    return isinstance(threading.current_thread(), threading._MainThread)


def start_daemon_thread(target, name, args=()):
    """Start ``target`` in a daemon thread without the deprecated setDaemon."""
    thread = threading.Thread(target=target, name=name, args=args)
    thread.daemon = True
    thread.start()
    return thread


def retry_on_eintr(function, *args):
    """Call ``function``, repeating it when Python 2.7 reports EINTR.

    Python 3.5 and later retry interrupted system calls themselves (PEP 475).
    """
    while True:
        try:
            return function(*args)
        except (OSError, IOError) as error:
            if getattr(error, 'errno', None) != errno.EINTR:
                raise
        except Exception as error:  # select.error on 2.7 is not an OSError
            if not error.args or error.args[0] != errno.EINTR:
                raise

