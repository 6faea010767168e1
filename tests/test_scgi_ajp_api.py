"""Public names and signatures of the SCGI, AJP, CGI and Paste modules against
upstream flup, which tests/support/upstream.py installs from PyPI.

A program written against upstream calls these with positional arguments
and keywords, so upstream's parameters must come first here, in the same
order and with the same defaults.  New parameters may only follow them.
"""

from __future__ import absolute_import

import importlib
import inspect
import json
import logging
import subprocess

import pytest

from flup.server import NoDefault

# (module, attribute path) of every callable compared.
CALLABLES = [
    ('flup.server.scgi', 'WSGIServer.__init__'),
    ('flup.server.scgi_fork', 'WSGIServer.__init__'),
    ('flup.server.scgi_base', 'BaseSCGIServer.__init__'),
    ('flup.server.ajp', 'WSGIServer.__init__'),
    ('flup.server.ajp_fork', 'WSGIServer.__init__'),
    ('flup.server.ajp_base', 'BaseAJPServer.__init__'),
    ('flup.server.cgi', 'WSGIServer.__init__'),
    ('flup.server.paste_factory', 'run_fcgi_thread'),
    ('flup.server.paste_factory', 'run_fcgi_fork'),
    ('flup.server.paste_factory', 'run_scgi_thread'),
    ('flup.server.paste_factory', 'run_scgi_fork'),
    ('flup.server.paste_factory', 'run_ajp_thread'),
    ('flup.server.paste_factory', 'run_ajp_fork'),
    ('flup.server.paste_factory', 'asbool'),
    ('flup.server.paste_factory', 'aslist'),
    ('flup.client.scgi_app', 'SCGIApp.__init__'),
]

PUBLIC_NAMES = {
    'flup.server.scgi': ['WSGIServer'],
    'flup.server.scgi_fork': ['WSGIServer'],
    'flup.server.scgi_base': ['BaseSCGIServer', 'Connection', 'Request', 'ProtocolError',
                              'readNetstring', 'recvall'],
    'flup.server.ajp': ['WSGIServer'],
    'flup.server.ajp_fork': ['WSGIServer'],
    'flup.server.ajp_base': ['BaseAJPServer', 'Connection', 'Request', 'Packet',
                             'InputStream', 'ProtocolError'],
    'flup.server.cgi': ['WSGIServer'],
    'flup.server.paste_factory': ['run_fcgi_thread', 'run_fcgi_fork', 'run_scgi_thread',
                                  'run_scgi_fork', 'run_ajp_thread', 'run_ajp_fork',
                                  'asbool', 'aslist'],
    'flup.client.scgi_app': ['SCGIApp'],
}

# (parameter, upstream default, default here) pairs that differ on purpose.
# Upstream 1.0.2 showed tracebacks to HTTP clients by default, and its SCGI
# Paste runners forced SCRIPT_NAME to '' where 1.0.3 keeps the web server's.
CHANGED_DEFAULTS = frozenset([
    ('debug', 'True', 'False'),
    ('scriptName', "''", '<NoDefault>'),
])

DUMP_SCRIPT = '''
import importlib, inspect, json, logging, sys
sys.path.insert(0, sys.argv[1])
result = {}
for module_name, path in json.loads(sys.argv[2]):
    target = importlib.import_module(module_name)
    for part in path.split('.'):
        target = getattr(target, part)
    spec = inspect.getargspec(target) if sys.version_info[0] == 2 else inspect.getfullargspec(target)
    defaults = list(spec.defaults or ())
    encoded = []
    for value in defaults:
        # Upstream 1.0.2 defines a NoDefault class in each module.
        if getattr(value, '__name__', None) == 'NoDefault':
            encoded.append('<NoDefault>')
        else:
            encoded.append(repr(value))
    result['%s:%s' % (module_name, path)] = [spec.args, encoded]
print(json.dumps(result))
'''


def signature(function):
    try:
        spec = inspect.getfullargspec(function)
    except AttributeError:  # Python 2.7
        spec = inspect.getargspec(function)
    defaults = ['<NoDefault>' if value is NoDefault else repr(value)
                for value in (spec.defaults or ())]
    return spec.args, defaults


def resolve(module_name, path):
    target = importlib.import_module(module_name)
    for part in path.split('.'):
        target = getattr(target, part)
    return target


def defaults_by_name(args, defaults):
    return dict(zip(args[len(args) - len(defaults):], defaults))


@pytest.fixture(scope='module')
def upstream_signatures(upstream_target, server_python):
    output = subprocess.check_output([server_python, '-c', DUMP_SCRIPT, upstream_target,
                                      json.dumps(CALLABLES)])
    return json.loads(output.decode('utf-8'))


@pytest.mark.parametrize('module_name, path', CALLABLES)
def test_signature_keeps_upstream_parameters(upstream_signatures, module_name, path):
    upstream_args, upstream_defaults = upstream_signatures['%s:%s' % (module_name, path)]
    args, defaults = signature(resolve(module_name, path))
    assert args[:len(upstream_args)] == upstream_args
    ours = defaults_by_name(args, defaults)
    theirs = defaults_by_name(upstream_args, upstream_defaults)
    for name, value in theirs.items():
        if (name, value, ours.get(name)) in CHANGED_DEFAULTS:
            continue
        assert ours.get(name) == value, 'default of %s differs' % name
    added = args[len(upstream_args):]
    assert all(name in ours for name in added), 'new parameters need defaults: %r' % added


@pytest.mark.parametrize('module_name', sorted(PUBLIC_NAMES))
def test_public_names_exist(module_name):
    module = importlib.import_module(module_name)
    for name in PUBLIC_NAMES[module_name]:
        assert hasattr(module, name), '%s.%s is missing' % (module_name, name)


def test_logging_level_default_is_info():
    from flup.server import ajp, scgi
    assert defaults_by_name(*signature(scgi.WSGIServer.__init__))['loggingLevel'] == \
        repr(logging.INFO)
    assert defaults_by_name(*signature(ajp.WSGIServer.__init__))['loggingLevel'] == \
        repr(logging.INFO)
