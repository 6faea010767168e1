"""Threaded FastCGI server for WSGI applications.

Each connection from the web server runs on a thread from a bounded pool;
with ``multiplexed=True`` each request on a connection gets a pool thread
of its own.  Typical use::

    from flup.server.fcgi import WSGIServer
    WSGIServer(application, bindAddress=('127.0.0.1', 9000)).run()

``python -m flup.server.fcgi`` serves a demo application on the socket the
web server passes as descriptor 0, or runs it once as CGI.
"""

from __future__ import absolute_import

from flup.server.fcgi_base import (
    DEFAULT_GRACE_PERIOD, DEFAULT_READ_TIMEOUT, FCGI_RESPONDER, BaseFCGIServer)
from flup.server._stats import ServerStats
from flup.server.threadedserver import ThreadedServer

__all__ = ['WSGIServer']

_POOL_KEYWORDS = frozenset(['minSpare', 'maxSpare', 'maxThreads'])


def check_keywords(kw, allowed, owner):
    """Raise TypeError naming the first keyword of ``kw`` not in ``allowed``."""
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise TypeError('%s() got an unexpected keyword argument %r'
                        % (owner, unknown[0]))


class WSGIServer(BaseFCGIServer, ThreadedServer):
    """Threaded FastCGI server.

    Takes the keywords of :class:`~flup.server.fcgi_base.BaseFCGIServer`
    plus the thread pool's ``minSpare`` (idle threads kept ready, default
    1), ``maxSpare`` (idle threads kept at most, default 5) and
    ``maxThreads`` (every thread the server owns, connections and
    multiplexed requests together; default 128, where upstream flup had no
    limit).
    """

    def __init__(self, application, environ=None,
                 multithreaded=True, multiprocess=False,
                 bindAddress=None, umask=None, multiplexed=False,
                 debug=False, roles=(FCGI_RESPONDER,), forceCGI=False,
                 readTimeout=DEFAULT_READ_TIMEOUT,
                 gracePeriod=DEFAULT_GRACE_PERIOD, **kw):
        kw.pop('jobClass', None)
        kw.pop('jobArgs', None)
        check_keywords(kw, _POOL_KEYWORDS, 'WSGIServer')
        BaseFCGIServer.__init__(self, application,
                                environ=environ,
                                multithreaded=multithreaded,
                                multiprocess=multiprocess,
                                bindAddress=bindAddress,
                                umask=umask,
                                multiplexed=multiplexed,
                                debug=debug,
                                roles=roles,
                                forceCGI=forceCGI,
                                readTimeout=readTimeout,
                                gracePeriod=gracePeriod)
        ThreadedServer.__init__(self, jobClass=self._connectionClass,
                                jobArgs=(self, None), **kw)
        self._stats = ServerStats(self._threadPool)
        max_threads = self._threadPool.max_threads
        self._set_capability(max_threads, max_threads)

    def run(self):
        """Serve until SIGINT or SIGTERM (return False) or SIGHUP (True)."""
        pool = self._threadPool
        return self._serve(
            lambda sock: ThreadedServer.run(self, sock), 'threaded',
            'up to %d threads' % pool.max_threads)


if __name__ == '__main__':
    from flup.demo import main_for_module
    main_for_module(WSGIServer)
