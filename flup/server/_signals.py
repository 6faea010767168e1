"""Signal handling for the server main loops.

A handler only records the signal number and writes one byte to a pipe; the
main loop waits on the pipe's read end beside its sockets, so a signal wakes
it at once, and it then acts on the recorded signals in order.
"""

from __future__ import absolute_import

import errno
import fcntl
import logging
import os
import signal

from flup._compat import current_thread_is_main
from flup.server._netio import set_cloexec

log = logging.getLogger(__name__)


class SignalRecorder(object):
    """Record signals for a main loop, and restore the old handlers after.

    ``on_record(signum)``, if given, is called inside the handler after
    the signal is recorded; it must do no more than arm a timer or set a
    flag.  ``install`` does nothing but log one INFO line when called
    outside the main thread, because Python allows signal handlers only there; the
    server then serves without reacting to signals.  ``wakeup_fd`` is
    readable whenever a recorded signal has not been taken yet.
    """

    def __init__(self, signals, on_record=None):
        self._signals = list(signals)
        self._on_record = on_record
        self._old_handlers = {}
        self._pending = []
        self._read_fd, self._write_fd = os.pipe()
        for fd in (self._read_fd, self._write_fd):
            set_cloexec(fd)
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.installed = False

    @property
    def wakeup_fd(self):
        return self._read_fd

    def install(self):
        if not current_thread_is_main():
            log.info('run() called outside the main thread: signal handlers '
                     'are not installed, so SIGHUP, SIGINT and SIGTERM keep '
                     'their current behaviour')
            return False
        for signum in self._signals:
            self._old_handlers[signum] = signal.signal(signum, self._record)
        self.installed = True
        return True

    def restore(self):
        for signum, handler in self._old_handlers.items():
            if handler is None:
                handler = signal.SIG_DFL
            signal.signal(signum, handler)
        self._old_handlers.clear()
        self.installed = False

    def close(self):
        self.restore()
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._read_fd = self._write_fd = -1

    def _record(self, signum, frame):
        self._pending.append(signum)
        self.wake()
        if self._on_record is not None:
            self._on_record(signum)

    def wake(self):
        """Make ``wakeup_fd`` readable, as a signal would."""
        try:
            os.write(self._write_fd, b'\x00')
        except OSError as error:
            # A full pipe already wakes the loop; a closed one means the
            # loop is gone.
            if error.errno not in (errno.EAGAIN, errno.EBADF):
                raise

    def take(self):
        """Return the signals recorded since the last call, oldest first."""
        try:
            while os.read(self._read_fd, 512):
                pass
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EBADF):
                raise
        pending = self._pending[:]
        del self._pending[:len(pending)]
        return pending
