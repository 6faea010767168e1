"""Serve one connection at a time in the main thread."""

from __future__ import absolute_import

import logging
import signal

from flup.server._mainloop import AcceptLoop
from flup.server._netio import describe_peer

__all__ = ['SingleServer']

log = logging.getLogger(__name__)


class GracePeriodExpired(BaseException):
    """Raised into a job still running ``gracePeriod`` seconds after a stop
    signal.  It derives from BaseException so that an application's
    ``except Exception`` does not keep the server from stopping."""


class SingleServer(AcceptLoop):
    """Accept connections and run ``jobClass(sock, addr, *jobArgs)`` for
    each, one after another, in the calling thread.

    No keyword beyond ``jobClass`` and ``jobArgs`` is accepted.  A job that
    waits on its socket should also wait on :attr:`wakeup_fds`, which become
    readable when a signal arrives, and then check :attr:`stop_requested`.
    """

    def __init__(self, jobClass=None, jobArgs=(), **kw):
        if kw:
            raise TypeError('SingleServer got unexpected keyword argument(s): %s'
                            % ', '.join(sorted(kw)))
        self._jobClass = jobClass
        self._jobArgs = jobArgs
        self._job_running = False
        self._grace_timer_armed = False
        self._init_loop()

    @property
    def wakeup_fds(self):
        recorder = self._recorder
        if recorder is None:
            return ()
        return (recorder.wakeup_fd,)

    @property
    def stop_requested(self):
        """True once a signal or :meth:`shutdown` asked the server to stop.

        Jobs run in the main thread here, so this is also where the signals
        they were woken by get handled.
        """
        recorder = self._recorder
        if recorder is not None:
            for signum in recorder.take():
                self._handle_signal(signum)
        return self._stopping

    def run(self, sock, timeout=1.0):
        """Serve on the listening socket ``sock`` until a signal or
        :meth:`shutdown`; return True after SIGHUP."""
        return self._run_loop(sock, timeout)

    def _dispatch(self, client, addr):
        self._job_running = True
        try:
            self._make_job(client, addr).run()
        except GracePeriodExpired:
            log.warning('the connection from %s was still busy %.1f s after '
                        'the stop signal; its request was abandoned',
                        describe_peer(addr),
                        self.gracePeriod)
        finally:
            self._job_running = False
            self._disarm_grace_timer()

    def _signal_recorded(self, signum):
        # The job runs in this thread, so nothing else can end an
        # application that never returns.  A timer raises into it once the
        # grace period is over.
        if not self._job_running or self._grace_timer_armed:
            return
        if signum not in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            return
        if not hasattr(signal, 'setitimer'):
            return
        self._grace_timer_armed = True
        signal.signal(signal.SIGALRM, self._grace_expired)
        signal.setitimer(signal.ITIMER_REAL, self.gracePeriod)

    def _grace_expired(self, signum, frame):
        if self._job_running:
            raise GracePeriodExpired()

    def _disarm_grace_timer(self):
        if self._grace_timer_armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            self._grace_timer_armed = False
