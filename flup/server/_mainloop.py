"""The accept loop shared by the threaded and single-connection servers.

A process model subclasses :class:`AcceptLoop` and implements
``_dispatch(client_sock, addr)``.  The loop waits on the listening socket
and on the signal pipe, so a signal wakes it at once; it never acts inside
a signal handler.

Jobs (the ``jobClass`` instances a process model runs) follow a small
protocol: ``run()`` serves one connection until it ends.  A job may also
provide ``stop()``, which asks it to finish the request in progress and end
without waiting for another, and ``abort()``, which ends it at once; the
server calls them on shutdown.
"""

from __future__ import absolute_import

import errno
import logging
import signal
import socket
import threading

from flup._compat import monotonic
from flup.server._netio import (
    close_quietly, describe_error, shutdown_quietly, wait_readable)
from flup.server._signals import SignalRecorder

log = logging.getLogger('flup.server')

# How long the loop pauses accepting after the process ran out of file
# descriptors, so that it does not spin on a listening socket that stays
# readable.
_FD_EXHAUSTED_PAUSE = 0.5

# Seconds to let discarded jobs unwind after abort() before run() returns.
_ABORT_WAIT = 1.0

DEFAULT_GRACE_PERIOD = 5.0


class AcceptLoop(object):
    """Accept connections and handle SIGHUP, SIGINT and SIGTERM.

    ``run()`` returns True after SIGHUP (the caller should reload) and
    False after SIGINT, SIGTERM or :meth:`shutdown`.
    """

    gracePeriod = DEFAULT_GRACE_PERIOD

    def _init_loop(self):
        self._live_jobs = set()
        self._jobs_lock = threading.Condition(threading.Lock())
        self._stopping = False
        self._reload = False
        self._recorder = None

    @property
    def stop_requested(self):
        """True once the server was asked to stop."""
        return self._stopping

    @property
    def connection_count(self):
        with self._jobs_lock:
            return len(self._live_jobs)

    def shutdown(self):
        """Ask ``run()`` to stop, from any thread."""
        self._stopping = True
        recorder = self._recorder
        if recorder is not None:
            recorder.wake()

    def _run_loop(self, sock, timeout=1.0):
        self._stopping = False
        self._reload = False
        recorder = SignalRecorder([signal.SIGHUP, signal.SIGINT, signal.SIGTERM],
                                  self._signal_recorded)
        self._recorder = recorder
        recorder.install()
        sock.setblocking(False)
        try:
            while not self._stopping:
                ready = wait_readable([sock.fileno(), recorder.wakeup_fd],
                                      timeout)
                for signum in recorder.take():
                    self._handle_signal(signum)
                if self._stopping:
                    break
                if sock.fileno() in ready:
                    self._accept_ready(sock, recorder)
        finally:
            try:
                self._stop_jobs()
            finally:
                self._recorder = None
                recorder.close()
        return self._reload

    def _signal_recorded(self, signum):
        """Run inside the signal handler; subclasses may arm a timer."""

    def _handle_signal(self, signum):
        if signum == signal.SIGHUP:
            log.info('received SIGHUP: stopping to reload')
            self._reload = True
        else:
            log.info('received signal %d: shutting down', signum)
        self._stopping = True

    def _accept_ready(self, sock, recorder):
        # Accept what is queued, but return to the signal check now and then.
        for _ in range(64):
            try:
                client, addr = sock.accept()
            except (socket.error, OSError) as error:
                code = getattr(error, 'errno', None)
                if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    return
                if code in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                if code in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                            errno.ENOMEM):
                    log.warning('accept() failed: %s; pausing %.1f s',
                                describe_error(error), _FD_EXHAUSTED_PAUSE)
                    wait_readable([recorder.wakeup_fd], _FD_EXHAUSTED_PAUSE)
                    return
                raise
            client.setblocking(True)
            self._dispatch(client, addr)
            if self._stopping:
                return

    def _make_job(self, client, addr):
        return _TrackedJob(self, self._jobClass(client, addr, *self._jobArgs),
                           client)

    def _register(self, job):
        with self._jobs_lock:
            self._live_jobs.add(job)

    def _unregister(self, job):
        with self._jobs_lock:
            self._live_jobs.discard(job)
            self._jobs_lock.notify_all()

    def _wait_for_jobs(self, timeout):
        deadline = monotonic() + timeout
        with self._jobs_lock:
            while self._live_jobs:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return False
                self._jobs_lock.wait(remaining)
        return True

    def _stop_jobs(self):
        with self._jobs_lock:
            jobs = list(self._live_jobs)
        for job in jobs:
            job.stop()
        if self._wait_for_jobs(self.gracePeriod):
            return
        with self._jobs_lock:
            jobs = list(self._live_jobs)
        log.warning('%d connection(s) still busy %.1f s after shutdown began; '
                    'closing them', len(jobs), self.gracePeriod)
        for job in jobs:
            job.abort()
        self._wait_for_jobs(_ABORT_WAIT)


class _TrackedJob(object):
    """A job registered with its server while it runs."""

    __slots__ = ('_server', 'job', '_sock')

    def __init__(self, server, job, sock):
        self._server = server
        self.job = job
        self._sock = sock

    def run(self):
        self._server._register(self)
        try:
            self.job.run()
        finally:
            # The job closes its socket itself; this only catches a job
            # class that does not.
            close_quietly(self._sock)
            self._server._unregister(self)

    def stop(self):
        stop = getattr(self.job, 'stop', None)
        if stop is not None:
            stop()

    def abort(self):
        abort = getattr(self.job, 'abort', None)
        if abort is not None:
            abort()
        else:
            # shutdown() wakes a thread blocked reading; close() would not.
            shutdown_quietly(self._sock)

    def __repr__(self):
        return repr(self.job)
