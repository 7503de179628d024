"""WSGI config for mysite: what django.core.wsgi would hand uWSGI, stdlib only."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    body = "settings %s uid %d host %s cwd %s\n" % (
        os.environ["DJANGO_SETTINGS_MODULE"], os.getuid(), environ.get("HTTP_HOST"), os.getcwd())
    return [body.encode()]
