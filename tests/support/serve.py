"""Start a flup FastCGI, SCGI or AJP server for the tests, through the public API only.

Usage::

    python tests/support/serve.py --model threaded|prefork|single
        --bind 127.0.0.1:PORT | [::1]:PORT | unix:/path | fd0
        [--multiplexed] [--kw NAME=VALUE ...] --app NAME

The FastCGI models map to ``WSGIServer`` of flup.server.fcgi, fcgi_fork and
fcgi_single.  The models scgi-threaded, scgi-prefork, ajp-threaded and
ajp-prefork run flup.server.scgi, scgi_fork, ajp and ajp_fork, which take
neither ``--multiplexed`` nor ``--bind fd0``.

Because only public names are used, the same script runs this project and
upstream flup.  The environment variable ``FLUP_TEST_TARGET`` names the
directory that contains the ``flup`` package to run (default: the
repository root).  It goes first on ``sys.path``, and the script exits with
status 2 if ``flup`` is then imported from anywhere else.

Logging goes to stderr at DEBUG.  The exit status is 0 when ``run()``
returns, whatever it returned.
"""

from __future__ import absolute_import, print_function

import argparse
import logging
import os
import re
import sys

SUPPORT_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(SUPPORT_DIR))

MODEL_MODULES = {
    'threaded': 'flup.server.fcgi',
    'prefork': 'flup.server.fcgi_fork',
    'single': 'flup.server.fcgi_single',
    'scgi-threaded': 'flup.server.scgi',
    'scgi-prefork': 'flup.server.scgi_fork',
    'ajp-threaded': 'flup.server.ajp',
    'ajp-prefork': 'flup.server.ajp_fork',
}

# The SCGI and AJP servers take no ``multiplexed`` keyword and have a
# default address instead of reading standard input.
FASTCGI_MODELS = ('threaded', 'prefork', 'single')

LOG_FORMAT = '%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s'


def parse_value(text):
    """Convert a ``--kw`` value to bool, int, float or None, else keep the str."""
    lowered = text.lower()
    if lowered in ('true', 'yes'):
        return True
    if lowered in ('false', 'no'):
        return False
    if lowered == 'none':
        return None
    # Prefixed literals such as umask=0o022 are read in their base.  A plain
    # '022' stays decimal, because Python 2 would read it as octal.
    if re.match(r'^0[oOxXbB][0-9a-fA-F]+$', text):
        return int(text, 0)
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_keyword(text):
    name, sep, value = text.partition('=')
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            'invalid --kw %r: expected NAME=VALUE, for example maxThreads=4' % text
        )
    return name, parse_value(value)


def parse_bind(text):
    """Convert a ``--bind`` value to the ``bindAddress`` that flup accepts.

    ``fd0`` becomes None (the listening socket is standard input),
    ``unix:/path`` a str, ``[::1]:PORT`` a 4-tuple (flup reads any tuple
    longer than two as IPv6) and ``HOST:PORT`` a 2-tuple.
    """
    if text == 'fd0':
        return None
    if text.startswith('unix:'):
        path = text[len('unix:') :]
        if not path:
            raise argparse.ArgumentTypeError(
                'invalid --bind %r: the Unix socket path is empty' % text
            )
        return str(path)
    host, sep, port = text.rpartition(':')
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(
            'invalid --bind %r: expected HOST:PORT, [IPV6]:PORT, unix:/path or fd0'
            % text
        )
    if host.startswith('[') and host.endswith(']'):
        return (str(host[1:-1]), int(port), 0, 0)
    return (str(host), int(port))


def build_parser():
    parser = argparse.ArgumentParser(
        description='Run a test WSGI app under a flup FastCGI, SCGI or AJP server.'
    )
    parser.add_argument(
        '--model',
        required=True,
        choices=sorted(MODEL_MODULES),
        help='server module: threaded (fcgi), prefork (fcgi_fork), single (fcgi_single), '
        'scgi-threaded, scgi-prefork, ajp-threaded or ajp-prefork',
    )
    parser.add_argument(
        '--bind',
        required=True,
        type=parse_bind,
        help='HOST:PORT, [IPV6]:PORT, unix:/path, or fd0 to serve the socket on standard input',
    )
    parser.add_argument(
        '--multiplexed', action='store_true', help='pass multiplexed=True to WSGIServer'
    )
    parser.add_argument(
        '--kw',
        action='append',
        default=[],
        type=parse_keyword,
        metavar='NAME=VALUE',
        help='extra WSGIServer keyword; the value is parsed as bool, int, float or str',
    )
    parser.add_argument(
        '--app', required=True, help='application name from tests/support/apps.py'
    )
    return parser


def import_flup_server(model):
    """Import the server module for ``model`` from FLUP_TEST_TARGET and return it."""
    target = os.path.realpath(os.environ.get('FLUP_TEST_TARGET') or REPO_ROOT)
    sys.path.insert(0, target)
    module_name = MODEL_MODULES[model]
    __import__(module_name)
    module = sys.modules[module_name]
    origin = os.path.realpath(module.__file__)
    if not origin.startswith(os.path.join(target, 'flup') + os.sep):
        print(
            'serve.py: %s was imported from %s, not from FLUP_TEST_TARGET=%s; '
            'remove the other flup from sys.path' % (module_name, origin, target),
            file=sys.stderr,
        )
        sys.exit(2)
    return module


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model not in FASTCGI_MODELS:
        if args.multiplexed:
            parser.error(
                '--multiplexed applies to the FastCGI models only, not %s' % args.model
            )
        if args.bind is None:
            parser.error(
                '--bind fd0 applies to the FastCGI models only, not %s' % args.model
            )
    logging.basicConfig(level=logging.DEBUG, format=LOG_FORMAT, stream=sys.stderr)
    log = logging.getLogger('flup_tests.serve')

    # The script's own folder is sys.path[0], so apps imports without flup.
    from apps import get_app

    application = get_app(args.app)

    module = import_flup_server(args.model)
    keywords = dict(args.kw)
    if args.model in FASTCGI_MODELS:
        keywords.setdefault('multiplexed', args.multiplexed)
    server = module.WSGIServer(application, bindAddress=args.bind, **keywords)
    log.info(
        'starting %s.WSGIServer (pid %d) bindAddress=%r app=%s keywords=%r',
        module.__name__,
        os.getpid(),
        args.bind,
        args.app,
        keywords,
    )
    result = server.run()
    log.info('run() returned %r (pid %d)', result, os.getpid())
    return 0


if __name__ == '__main__':
    sys.exit(main())
