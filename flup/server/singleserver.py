"""Serve one connection at a time in the main thread."""

from __future__ import absolute_import

from flup.server._mainloop import AcceptLoop

__all__ = ['SingleServer']


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
        self._make_job(client, addr).run()
