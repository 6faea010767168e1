"""Prefork FastCGI server for WSGI applications.

Each connection is served by one of a set of child processes, one request
at a time, so the application needs no thread safety.  Multiplexing is not
available: ``FCGI_MPXS_CONNS`` is 0.
"""

from __future__ import absolute_import

from flup.server.fcgi_base import (
    DEFAULT_GRACE_PERIOD, DEFAULT_READ_TIMEOUT, FCGI_RESPONDER, BaseFCGIServer,
    Connection)
from flup.server.fcgi import check_keywords
from flup.server.preforkserver import PreforkServer

__all__ = ['WSGIServer']

_PREFORK_KEYWORDS = frozenset(
    ['minSpare', 'maxSpare', 'maxChildren', 'maxRequests', 'sockTimeout'])


class WSGIServer(BaseFCGIServer, PreforkServer):
    """Prefork FastCGI server.

    Takes the keywords of :class:`~flup.server.fcgi_base.BaseFCGIServer`,
    ``timeout`` (seconds an application may run before SIGALRM ends the
    request; None for no limit) and the process pool's ``minSpare``,
    ``maxSpare``, ``maxChildren``, ``maxRequests`` and ``sockTimeout``
    (see :class:`~flup.server.preforkserver.PreforkServer`).
    ``multiplexed=True`` is ignored with one log line.
    """

    def __init__(self, application, environ=None,
                 bindAddress=None, umask=None, multiplexed=False,
                 debug=False, roles=(FCGI_RESPONDER,), forceCGI=False,
                 timeout=None, readTimeout=DEFAULT_READ_TIMEOUT,
                 gracePeriod=DEFAULT_GRACE_PERIOD, **kw):
        kw.pop('jobClass', None)
        kw.pop('jobArgs', None)
        check_keywords(kw, _PREFORK_KEYWORDS, 'WSGIServer')
        BaseFCGIServer.__init__(self, application,
                                environ=environ,
                                multithreaded=False,
                                multiprocess=True,
                                bindAddress=bindAddress,
                                umask=umask,
                                multiplexed=multiplexed,
                                debug=debug,
                                roles=roles,
                                forceCGI=forceCGI,
                                readTimeout=readTimeout,
                                gracePeriod=gracePeriod)
        self._disable_multiplexing('prefork')
        PreforkServer.__init__(self, jobClass=Connection,
                               jobArgs=(self, timeout), **kw)
        self.gracePeriod = gracePeriod
        max_children = kw.get('maxChildren', 50)
        self._set_capability(max_children, max_children)

    def run(self):
        """Serve until SIGINT or SIGTERM (return False) or SIGHUP (True)."""
        return self._serve(lambda sock: PreforkServer.run(self, sock),
                           'prefork', 'up to %s children'
                           % self.capability['FCGI_MAX_CONNS'])


if __name__ == '__main__':
    from flup.demo import main_for_module
    main_for_module(WSGIServer)
