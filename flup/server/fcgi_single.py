"""Single-connection FastCGI server for WSGI applications.

One connection is served at a time, in the main thread, so the
application needs no thread safety.  Multiplexing is not available.
"""

from __future__ import absolute_import

from flup.server.fcgi_base import (
    DEFAULT_GRACE_PERIOD, DEFAULT_READ_TIMEOUT, FCGI_RESPONDER, BaseFCGIServer)
from flup.server.fcgi import check_keywords
from flup.server.singleserver import SingleServer

__all__ = ['WSGIServer']


class WSGIServer(BaseFCGIServer, SingleServer):
    """FastCGI server that serves one connection at a time.

    Takes the keywords of :class:`~flup.server.fcgi_base.BaseFCGIServer`;
    ``multiplexed=True`` is ignored with one log line.
    """

    def __init__(self, application, environ=None,
                 bindAddress=None, umask=None, multiplexed=False,
                 debug=False, roles=(FCGI_RESPONDER,), forceCGI=False,
                 readTimeout=DEFAULT_READ_TIMEOUT,
                 gracePeriod=DEFAULT_GRACE_PERIOD, **kw):
        kw.pop('jobClass', None)
        kw.pop('jobArgs', None)
        check_keywords(kw, (), 'WSGIServer')
        BaseFCGIServer.__init__(self, application,
                                environ=environ,
                                multithreaded=False,
                                multiprocess=False,
                                bindAddress=bindAddress,
                                umask=umask,
                                multiplexed=multiplexed,
                                debug=debug,
                                roles=roles,
                                forceCGI=forceCGI,
                                readTimeout=readTimeout,
                                gracePeriod=gracePeriod)
        self._disable_multiplexing('single')
        SingleServer.__init__(self, jobClass=self._connectionClass,
                              jobArgs=(self, None))
        self._set_capability(1, 1)

    def run(self):
        """Serve until SIGINT or SIGTERM (return False) or SIGHUP (True)."""
        return self._serve(lambda sock: SingleServer.run(self, sock),
                           'single', 'one connection at a time')


if __name__ == '__main__':
    from flup.demo import main_for_module
    main_for_module(WSGIServer)
