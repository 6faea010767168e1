"""Paste Deploy server runners for the FastCGI, SCGI and AJP servers.

setup.py declares them as ``paste.server_runner`` entry points, and an
ini file selects one with ``use``::

    [server:main]
    use = egg:flup#fcgi_thread
    host = 127.0.0.1
    port = 9000

Paste Deploy passes every option as a string.  Numbers are read as
decimal except ``umask``, which is octal (``022`` is 0o022), booleans with
:func:`asbool` and address lists with :func:`aslist`.  ``debug`` defaults
to the ``debug`` option of the ``[DEFAULT]`` section.  Each runner blocks
until the server stops.
"""

from __future__ import absolute_import

import six

from flup.server import NoDefault

__all__ = ['asbool', 'aslist', 'run_fcgi_thread', 'run_fcgi_fork',
           'run_scgi_thread', 'run_scgi_fork', 'run_ajp_thread',
           'run_ajp_fork']

_TRUE_WORDS = ('true', 'yes', 'on', 'y', 't', '1')
_FALSE_WORDS = ('false', 'no', 'off', 'n', 'f', '0')


def asbool(obj):
    """Return a bool for ``obj``; strings are read as yes/no words."""
    if isinstance(obj, six.string_types):
        word = obj.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise ValueError('invalid boolean %r: use one of %s'
                         % (obj, ', '.join(_TRUE_WORDS + _FALSE_WORDS)))
    return bool(obj)


def aslist(obj, sep=None, strip=True):
    """Return ``obj`` as a list; a string is split at ``sep`` (whitespace
    by default)."""
    if isinstance(obj, six.string_types):
        items = obj.split(sep)
        if strip:
            items = [item.strip() for item in items]
        return items
    if isinstance(obj, (list, tuple)):
        return obj
    if obj is None:
        return []
    return [obj]


def _as_int(name, value):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError('invalid %s %r: expected a decimal integer'
                         % (name, value))


def _as_umask(value):
    """Read a umask; a string is octal, as in a shell (``022``)."""
    if value is None or isinstance(value, six.integer_types):
        return value
    try:
        return int(value.strip(), 8)
    except ValueError:
        raise ValueError('invalid umask %r: expected an octal number such as '
                         '022' % (value,))


def _debug(debug, global_conf):
    if debug is NoDefault:
        debug = global_conf.get('debug', False)
    return asbool(debug)


def _pool_options(**options):
    """Return the options that were given, as integers."""
    return dict((name, _as_int(name, value))
                for name, value in options.items() if value is not None)


def _fcgi_address(host, port, socket):
    if socket:
        if host is not None or port is not None:
            raise ValueError('give either socket or host and port, not both')
        return socket
    if host:
        if port is None:
            raise ValueError('host %r needs a port' % (host,))
        return (host, _as_int('port', port))
    if port is not None:
        raise ValueError('port %r needs a host' % (port,))
    # None: the web server passes the listening socket as descriptor 0.
    return None


def run_fcgi_thread(wsgi_app, global_conf,
                    host=None, port=None, socket=None, umask=None,
                    multiplexed=False, debug=NoDefault,
                    minSpare=None, maxSpare=None, maxThreads=None):
    """Serve ``wsgi_app`` with the threaded FastCGI server."""
    from flup.server.fcgi import WSGIServer
    server = WSGIServer(
        wsgi_app,
        bindAddress=_fcgi_address(host, port, socket),
        umask=_as_umask(umask),
        multiplexed=asbool(multiplexed),
        debug=_debug(debug, global_conf),
        **_pool_options(minSpare=minSpare, maxSpare=maxSpare,
                        maxThreads=maxThreads))
    return server.run()


def run_fcgi_fork(wsgi_app, global_conf,
                  host=None, port=None, socket=None, umask=None,
                  multiplexed=False, debug=NoDefault,
                  minSpare=None, maxSpare=None,
                  maxChildren=None, maxRequests=None):
    """Serve ``wsgi_app`` with the prefork FastCGI server."""
    from flup.server.fcgi_fork import WSGIServer
    server = WSGIServer(
        wsgi_app,
        bindAddress=_fcgi_address(host, port, socket),
        umask=_as_umask(umask),
        multiplexed=asbool(multiplexed),
        debug=_debug(debug, global_conf),
        **_pool_options(minSpare=minSpare, maxSpare=maxSpare,
                        maxChildren=maxChildren, maxRequests=maxRequests))
    return server.run()


def run_scgi_thread(wsgi_app, global_conf,
                    scriptName=NoDefault, host='localhost', port='4000',
                    allowedServers='127.0.0.1', debug=NoDefault,
                    minSpare=None, maxSpare=None, maxThreads=None):
    """Serve ``wsgi_app`` with the threaded SCGI server."""
    from flup.server.scgi import WSGIServer
    server = WSGIServer(
        wsgi_app,
        scriptName=scriptName,
        bindAddress=(host, _as_int('port', port)),
        allowedServers=aslist(allowedServers),
        debug=_debug(debug, global_conf),
        **_pool_options(minSpare=minSpare, maxSpare=maxSpare,
                        maxThreads=maxThreads))
    return server.run()


def run_scgi_fork(wsgi_app, global_conf,
                  scriptName=NoDefault, host='localhost', port='4000',
                  allowedServers='127.0.0.1', debug=NoDefault,
                  minSpare=None, maxSpare=None,
                  maxChildren=None, maxRequests=None):
    """Serve ``wsgi_app`` with the prefork SCGI server."""
    from flup.server.scgi_fork import WSGIServer
    server = WSGIServer(
        wsgi_app,
        scriptName=scriptName,
        bindAddress=(host, _as_int('port', port)),
        allowedServers=aslist(allowedServers),
        debug=_debug(debug, global_conf),
        **_pool_options(minSpare=minSpare, maxSpare=maxSpare,
                        maxChildren=maxChildren, maxRequests=maxRequests))
    return server.run()


def run_ajp_thread(wsgi_app, global_conf,
                   scriptName='', host='localhost', port='8009',
                   allowedServers='127.0.0.1', debug=NoDefault,
                   minSpare=None, maxSpare=None, maxThreads=None):
    """Serve ``wsgi_app`` with the threaded AJP 1.3 server."""
    from flup.server.ajp import WSGIServer
    server = WSGIServer(
        wsgi_app,
        scriptName=scriptName,
        bindAddress=(host, _as_int('port', port)),
        allowedServers=aslist(allowedServers),
        debug=_debug(debug, global_conf),
        **_pool_options(minSpare=minSpare, maxSpare=maxSpare,
                        maxThreads=maxThreads))
    return server.run()


def run_ajp_fork(wsgi_app, global_conf,
                 scriptName='', host='localhost', port='8009',
                 allowedServers='127.0.0.1', debug=NoDefault,
                 minSpare=None, maxSpare=None,
                 maxChildren=None, maxRequests=None):
    """Serve ``wsgi_app`` with the prefork AJP 1.3 server."""
    from flup.server.ajp_fork import WSGIServer
    server = WSGIServer(
        wsgi_app,
        scriptName=scriptName,
        bindAddress=(host, _as_int('port', port)),
        allowedServers=aslist(allowedServers),
        debug=_debug(debug, global_conf),
        **_pool_options(minSpare=minSpare, maxSpare=maxSpare,
                        maxChildren=maxChildren, maxRequests=maxRequests))
    return server.run()
