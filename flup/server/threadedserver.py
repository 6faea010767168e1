"""Serve each connection on a thread from a bounded pool."""

from __future__ import absolute_import

import logging

from flup.server._mainloop import AcceptLoop
from flup.server._netio import close_quietly, describe_peer
from flup.server.threadpool import ThreadPool

__all__ = ['ThreadedServer']

log = logging.getLogger(__name__)


class ThreadedServer(AcceptLoop):
    """Accept connections and run ``jobClass(sock, addr, *jobArgs)`` on a
    pool thread for each.

    Extra keywords (``minSpare``, ``maxSpare``, ``maxThreads``) configure the
    :class:`~flup.server.threadpool.ThreadPool`; any other keyword raises
    TypeError.  A connection that arrives while every thread is busy and
    the pool is at ``maxThreads`` is closed at once, so the web server sees
    at once that this backend is full.
    """

    # Connection jobs run in pool threads, which shutdown() wakes directly;
    # none of them waits on a signal pipe.
    wakeup_fds = ()

    def __init__(self, jobClass=None, jobArgs=(), **kw):
        self._jobClass = jobClass
        self._jobArgs = jobArgs
        self._threadPool = ThreadPool(**kw)
        self._init_loop()

    def run(self, sock, timeout=1.0):
        """Serve on the listening socket ``sock`` until a signal or
        :meth:`shutdown`; return True after SIGHUP."""
        return self._run_loop(sock, timeout)

    def _dispatch(self, client, addr):
        job = self._make_job(client, addr)
        if not self._threadPool.addJob(job, allowQueuing=False):
            log.warning('no worker thread free (maxThreads=%d): closing the '
                        'connection from %s', self._threadPool.max_threads,
                        describe_peer(addr))
            close_quietly(client)

    def _stop_jobs(self):
        AcceptLoop._stop_jobs(self)
        # Threads still running an application after the grace period are
        # daemon threads; they end when the application returns or the
        # process exits.
        self._threadPool.shutdown(timeout=0.5)
