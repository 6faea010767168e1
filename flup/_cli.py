"""The ``flup`` command: serve a WSGI application over FastCGI, SCGI or AJP.

``python -m flup [MODULE:CALLABLE]`` (or the ``flup`` console script) binds
a FastCGI socket and serves the named application, or the demo from
:mod:`flup.demo`, with the threaded, prefork or single process model.
``--http PORT`` also starts :class:`flup._devhttp.DevHTTPServer`, which
forwards each HTTP request over FastCGI through
:class:`~flup.client.fcgi_app.FCGIApp`, so the application can be opened
in a browser without a web server.

SIGHUP re-executes the process (:func:`reexecute`) so that edited code is
imported.  When the command line cannot be rebuilt (``python -c``, or no
``sys.executable``) or ``os.execv`` fails, the server restarts in the same
process with the application already imported, and a WARNING or ERROR line
says so.

``SERVER_MODULES`` maps each protocol and model to its server module, and
``CLIENTS`` maps each protocol to the client the HTTP front uses.  A new
protocol adds an entry to both.
"""

from __future__ import absolute_import

import argparse
import importlib
import logging
import os
import re
import socket
import sys

from flup import __version__
from flup.server.fcgi_base import DEFAULT_GRACE_PERIOD, DEFAULT_READ_TIMEOUT
from flup.server.threadpool import DEFAULT_MAX_THREADS

__all__ = ['main', 'build_parser', 'parse_bind', 'load_application']

log = logging.getLogger(__name__)

PROTOCOLS = ('fcgi', 'scgi', 'ajp')

SERVER_MODULES = {
    'fcgi': {
        'threaded': 'flup.server.fcgi',
        'prefork': 'flup.server.fcgi_fork',
        'single': 'flup.server.fcgi_single',
    },
    'scgi': {
        'threaded': 'flup.server.scgi',
        'prefork': 'flup.server.scgi_fork',
    },
    'ajp': {
        'threaded': 'flup.server.ajp',
        'prefork': 'flup.server.ajp_fork',
    },
}

PROTOCOL_NAMES = {'fcgi': 'FastCGI', 'scgi': 'SCGI', 'ajp': 'AJP'}

MODELS = ('threaded', 'prefork', 'single')

# The usual port of each protocol: FastCGI has none, SCGI and AJP keep
# upstream flup's defaults.
DEFAULT_BINDS = {'fcgi': '127.0.0.1:9000', 'scgi': '127.0.0.1:4000',
                 'ajp': '127.0.0.1:8009'}
DEFAULT_BIND = DEFAULT_BINDS['fcgi']
DEMO_APPLICATION = 'flup.demo:application'

# (argparse dest, WSGIServer keyword, models that take it).
POOL_OPTIONS = (
    ('min_spare', 'minSpare', ('threaded', 'prefork')),
    ('max_spare', 'maxSpare', ('threaded', 'prefork')),
    ('max_threads', 'maxThreads', ('threaded',)),
    ('max_children', 'maxChildren', ('prefork',)),
    ('max_requests', 'maxRequests', ('prefork',)),
)

LOG_LEVELS = ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')
LOG_FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'


def _fcgi_client(address):
    from flup.client.fcgi_app import FCGIApp
    return FCGIApp(connect=address)


def _scgi_client(address):
    from flup.client.scgi_app import SCGIApp
    return SCGIApp(connect=address)


# The WSGI client that the --http front forwards through, per protocol.
# flup has no AJP client, so --http is not available with AJP.
CLIENTS = {'fcgi': _fcgi_client, 'scgi': _scgi_client}


# Parsing.

def parse_bind(text):
    """Convert a ``--bind`` value into a ``bindAddress``.

    ``HOST:PORT`` gives ``(host, port)``, ``[V6]:PORT`` gives an IPv6
    ``(host, port)``, and ``unix:PATH`` or any value containing ``/`` gives
    the socket path as a str.
    """
    if text.startswith('unix:'):
        path = text[len('unix:'):]
        if not path:
            raise argparse.ArgumentTypeError(
                'invalid bind address %r: the socket path is empty' % text)
        return path
    if '/' in text:
        return text
    match = re.match(r'^\[([0-9A-Fa-f:.%a-zA-Z]+)\]:([0-9]+)$', text)
    if match:
        host, port = match.group(1), match.group(2)
    else:
        host, _, port = text.rpartition(':')
        if not host or ':' in host or not port.isdigit():
            raise argparse.ArgumentTypeError(
                'invalid bind address %r: use HOST:PORT, [IPV6]:PORT or a '
                'socket path such as /run/app.sock' % text)
    number = int(port)
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(
            'invalid port %s in %r: use 1 to 65535' % (port, text))
    return (host, number)


def _parse_umask(text):
    try:
        value = int(text, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(
            'invalid umask %r: use an octal number such as 022 or 0077' % text)
    return value


def _parse_seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(
            'invalid duration %r: use a positive number of seconds' % text)
    return value


def _parse_count(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                'invalid count %r: use a whole number of at least %d'
                % (text, minimum))
        return value
    return parse


def _parse_port(text):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(
            'invalid port %r: use 1 to 65535' % text)
    return int(text)


def _parse_log_level(text):
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            'invalid log level %r: use one of %s' % (text, ', '.join(LOG_LEVELS)))
    return level


def build_parser():
    parser = argparse.ArgumentParser(
        prog='flup',
        description='Serve a WSGI application over FastCGI, SCGI or AJP.  '
                    'Without MODULE:CALLABLE the built-in demo page is '
                    'served.',
        usage='python -m flup [options] [MODULE:CALLABLE]\n'
              '       flup [options] [MODULE:CALLABLE]',
        epilog='Run it as python -m flup or as the installed flup command.  '
               'Example: python -m flup --http 8080 serves the demo over '
               'FastCGI on %s and opens an HTTP front on '
               'http://127.0.0.1:8080/.  SIGINT and SIGTERM stop the server '
               'after the requests in progress finish.  SIGHUP stops it the '
               'same way, then re-executes the process with the same '
               'interpreter and arguments, so the application is imported '
               'again.  The listening socket is closed and bound again, so '
               'connections that arrive in between are refused.'
               % DEFAULT_BIND)
    _add_server_arguments(parser)
    _add_pool_arguments(parser)
    _add_front_arguments(parser)
    _add_logging_arguments(parser)
    parser.add_argument('--version', action='version',
                        version='flup %s' % __version__)
    return parser


def _add_server_arguments(parser):
    parser.add_argument(
        'app', nargs='?', default=None, metavar='MODULE:CALLABLE',
        help='the WSGI application, for example myproject.wsgi:application; '
             'CALLABLE defaults to "application" and the current directory '
             'is searched first (default: the demo, %s)' % DEMO_APPLICATION)
    parser.add_argument(
        '--protocol', choices=PROTOCOLS, default='fcgi',
        help='protocol the web server speaks: fcgi (FastCGI), scgi or ajp '
             '(AJP 1.3); scgi and ajp take the threaded and prefork models '
             '(default: fcgi)')
    parser.add_argument(
        '--bind', type=parse_bind, default=None, metavar='ADDRESS',
        help='listening address: HOST:PORT, [IPV6]:PORT, or a Unix socket '
             'path (unix:PATH, or any value with a "/") (default: %s for '
             'fcgi, %s for scgi, %s for ajp)'
             % (DEFAULT_BINDS['fcgi'], DEFAULT_BINDS['scgi'],
                DEFAULT_BINDS['ajp']))
    parser.add_argument(
        '--model', choices=MODELS, default='threaded',
        help='process model: threaded (a pool of threads), prefork (a pool '
             'of processes) or single (one connection at a time) '
             '(default: threaded)')
    parser.add_argument(
        '--multiplexed', action='store_true',
        help='serve several requests at once on one FastCGI connection, '
             'threaded model only; FLUP_MULTIPLEXED in the environment '
             'overrides it (default: off)')
    parser.add_argument(
        '--umask', type=_parse_umask, default=None, metavar='OCTAL',
        help='umask, in octal, applied while the Unix socket file is '
             'created (default: the process umask)')
    parser.add_argument(
        '--read-timeout', type=_parse_seconds, default=None,
        metavar='SECONDS',
        help='seconds a connection may stay silent in the middle of a '
             'request before it is closed (default: %g)'
             % DEFAULT_READ_TIMEOUT)
    parser.add_argument(
        '--grace-period', type=_parse_seconds, default=None,
        metavar='SECONDS',
        help='seconds to wait for running requests when a connection ends '
             'or the server stops (default: %g)' % DEFAULT_GRACE_PERIOD)
    parser.add_argument(
        '--debug', action='store_true',
        help='show the traceback in the 500 page when the application '
             'raises; never use it in production (default: a generic page)')


def _add_front_arguments(parser):
    group = parser.add_argument_group('development HTTP front')
    group.add_argument(
        '--http', type=_parse_port, default=None, metavar='PORT',
        help='also serve HTTP on this TCP port, forwarding each request '
             'over FastCGI or SCGI to the server; for development only '
             '(default: off)')
    group.add_argument(
        '--http-host', default='127.0.0.1', metavar='HOST',
        help='address the --http front listens on (default: 127.0.0.1)')


def _add_logging_arguments(parser):
    parser.add_argument(
        '--log-level', type=_parse_log_level, default='INFO',
        metavar='LEVEL',
        help='lowest level logged to stderr: %s (default: INFO)'
             % ', '.join(LOG_LEVELS))


def _add_pool_arguments(parser):
    group = parser.add_argument_group('pool sizes')
    group.add_argument(
        '--min-spare', type=_parse_count(1), default=None, metavar='N',
        help='idle threads (threaded) or child processes (prefork) kept '
             'ready (default: 1)')
    group.add_argument(
        '--max-spare', type=_parse_count(1), default=None, metavar='N',
        help='idle threads or child processes kept at most (default: 5)')
    group.add_argument(
        '--max-threads', type=_parse_count(1), default=None, metavar='N',
        help='threads in all, threaded model (default: %d)'
             % DEFAULT_MAX_THREADS)
    group.add_argument(
        '--max-children', type=_parse_count(1), default=None, metavar='N',
        help='child processes in all, prefork model (default: 50)')
    group.add_argument(
        '--max-requests', type=_parse_count(0), default=None, metavar='N',
        help='connections a prefork child serves before it is replaced; '
             '0 means no limit (default: 0)')


def _check_model_options(parser, args):
    if args.bind is None:
        args.bind = parse_bind(DEFAULT_BINDS[args.protocol])
    if args.model not in SERVER_MODULES[args.protocol]:
        parser.error('--model %s applies to --protocol fcgi only, not %s'
                     % (args.model, args.protocol))
    if args.http is not None and args.protocol not in CLIENTS:
        parser.error('--http is not available with --protocol %s, which '
                     'has no client in flup' % args.protocol)
    for dest, _, models in POOL_OPTIONS:
        if getattr(args, dest) is not None and args.model not in models:
            parser.error('--%s applies to --model %s only, not %s'
                         % (dest.replace('_', '-'), ' or '.join(models),
                            args.model))
    if args.multiplexed and args.protocol != 'fcgi':
        parser.error('--multiplexed applies to --protocol fcgi only')
    if args.multiplexed and args.model != 'threaded':
        parser.error('--multiplexed applies to --model threaded only, not %s'
                     % args.model)
    if args.umask is not None and isinstance(args.bind, tuple):
        parser.error('--umask applies to a Unix socket --bind address only')


# Application.

def load_application(spec):
    """Import ``MODULE:CALLABLE`` and return the callable.

    The current directory is put first on ``sys.path``, as ``python -m``
    does.  Raise ValueError with a message for the user on failure.
    """
    module_name, _, attribute = spec.partition(':')
    attribute = attribute or 'application'
    if not module_name:
        raise ValueError('invalid application %r: expected MODULE:CALLABLE'
                         % spec)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        target = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError('cannot import module %r: %s' % (module_name, error))
    for name in attribute.split('.'):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise ValueError('module %r has no attribute %r'
                             % (module_name, attribute))
    if not callable(target):
        raise ValueError('%s is not callable' % spec)
    return target


# Running.

def _server_keywords(args):
    keywords = {'bindAddress': args.bind, 'debug': args.debug}
    if args.umask is not None:
        keywords['umask'] = args.umask
    if args.multiplexed:
        keywords['multiplexed'] = True
    if args.read_timeout is not None:
        keywords['readTimeout'] = args.read_timeout
    if args.grace_period is not None:
        keywords['gracePeriod'] = args.grace_period
    for dest, keyword, _ in POOL_OPTIONS:
        value = getattr(args, dest)
        if value is not None:
            keywords[keyword] = value
    return keywords


def client_address(bind_address):
    """Return the address a local client connects to for ``bind_address``.

    A server bound to every interface (0.0.0.0 or ::) is reached through
    the loopback address of the same family.
    """
    if not isinstance(bind_address, tuple):
        return bind_address
    host, port = bind_address[:2]
    if host in ('0.0.0.0', ''):
        host = '127.0.0.1'
    elif host == '::':
        host = '::1'
    return (host, port)


def _server_class(module, on_listening):
    """Subclass the module's WSGIServer to call ``on_listening`` once bound.

    ``_setupSocket`` (upstream flup's name) returns the listening socket,
    so the HTTP front starts only when FastCGI connections can be accepted.
    """
    base = module.WSGIServer

    class Server(base):
        def _setupSocket(self):
            sock = base._setupSocket(self)
            if sock is not None:
                on_listening()
            return sock

    Server.__name__ = base.__name__
    return Server


class _Runner(object):
    """Run the server until SIGINT or SIGTERM; re-execute the process on SIGHUP."""

    def __init__(self, args, application):
        self.args = args
        self.application = application
        self.listening = False
        self.front = None

    def on_listening(self):
        self.listening = True
        front = self.front
        if front is not None and not front.running:
            front.start()
            log.info('open %s in a browser: HTTP front forwarding to %s on '
                     '%s (development only)', front.url,
                     PROTOCOL_NAMES[self.args.protocol],
                     _describe(self.args.bind))

    def make_server(self):
        """Build a server; an invalid combination of options raises ValueError."""
        module = importlib.import_module(
            SERVER_MODULES[self.args.protocol][self.args.model])
        server_class = _server_class(module, self.on_listening)
        keywords = _server_keywords(self.args)
        if self.args.protocol != 'fcgi':
            # The SCGI and AJP servers set their logger's level from
            # loggingLevel (INFO by default); follow --log-level instead.
            keywords['loggingLevel'] = getattr(logging, self.args.log_level)
        return server_class(self.application, **keywords)

    def run(self, server):
        # run() returns True after SIGHUP, once its socket is closed.
        while server.run():
            reexecute()
            server = self.make_server()


def reexec_argv():
    """Return the argv that starts this process again, or None if unknown.

    Python 3.10 and later keep the original command line, interpreter
    options included, in ``sys.orig_argv``.  Older versions lose options
    such as ``-u``; ``python -m flup`` is rebuilt from ``__main__``'s
    package, and a script (the ``flup`` console script, a launcher) is run
    again by its path.
    """
    executable = sys.executable
    if not executable:
        return None
    original = getattr(sys, 'orig_argv', None)
    if original:
        return [executable] + list(original[1:])
    main_module = sys.modules.get('__main__')
    spec = getattr(main_module, '__spec__', None)
    if spec is not None and getattr(spec, 'name', None):
        module_name = spec.name
        if module_name.endswith('.__main__'):
            module_name = module_name[:-len('.__main__')]
        return [executable, '-m', module_name] + sys.argv[1:]
    package = getattr(main_module, '__package__', None)
    if package and os.path.basename(sys.argv[0]).startswith('__main__.py'):
        # Python 2.7 run with -m sets __package__ but no __spec__.
        return [executable, '-m', package] + sys.argv[1:]
    if not sys.argv or not sys.argv[0] or sys.argv[0] == '-c':
        return None
    return [executable] + sys.argv


def _set_close_on_exec(lowest_fd):
    """Set FD_CLOEXEC on every open descriptor from ``lowest_fd`` up.

    Python 2.7 creates inheritable descriptors, so without this the HTTP
    front's listening socket would stay open in the new process and its
    port could not be bound again.  Descriptors 0 to 2 are kept, which
    includes a listening socket passed as descriptor 0.
    """
    import fcntl
    try:
        names = os.listdir('/proc/self/fd')
    except OSError:
        names = [str(fd) for fd in range(lowest_fd, 1024)]
    for name in names:
        fd = int(name)
        if fd < lowest_fd:
            continue
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        except (IOError, OSError):
            pass  # closed meanwhile, such as the listing's own descriptor


def reexecute():
    """Replace this process with a fresh run of the same command.

    Return only when that is impossible, after logging why; the caller
    then restarts the server with the application already imported.
    """
    argv = reexec_argv()
    if argv is None:
        log.warning('SIGHUP received, but the command line that started '
                    'this process is unknown. Restarting the server without '
                    're-importing the application.')
        return
    log.info('SIGHUP received: re-executing %s to import the application '
             'again', ' '.join(argv))
    for handler in logging.getLogger().handlers:
        handler.flush()
    _set_close_on_exec(3)
    try:
        os.execv(argv[0], argv)
    except OSError as error:
        log.error('failed to re-execute %s: %s. Restarting the server '
                  'without re-importing the application.', argv[0], error)


def _describe(address):
    if isinstance(address, tuple):
        host, port = address[:2]
        return '[%s]:%d' % (host, port) if ':' in host else '%s:%d' % (host, port)
    return 'unix:%s' % address


def _make_front(args):
    from flup._devhttp import DevHTTPServer
    client = CLIENTS[args.protocol](client_address(args.bind))
    return DevHTTPServer(client, args.http_host, args.http)


def main(argv=None):
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_model_options(parser, args)
    try:
        application = load_application(args.app or DEMO_APPLICATION)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format=LOG_FORMAT, stream=sys.stderr)
    runner = _Runner(args, application)
    try:
        server = runner.make_server()
    except ValueError as error:
        parser.error('invalid combination of options: %s' % error)
    if args.http is not None:
        try:
            runner.front = _make_front(args)
        except (socket.error, OSError) as error:
            log.error('cannot listen for HTTP on %s: %s',
                      _describe((args.http_host, args.http)), error)
            return 1
    try:
        runner.run(server)
        if not runner.listening:
            # The SCGI and AJP servers log a bind failure and return False.
            return 1
    except (socket.error, OSError) as error:
        if runner.listening:
            raise
        log.error('cannot listen on %s: %s', _describe(args.bind), error)
        return 1
    except KeyboardInterrupt:
        # SIGINT before the server installed its handlers.
        log.info('interrupted')
        return 1
    finally:
        if runner.front is not None:
            runner.front.stop()
    return 0
