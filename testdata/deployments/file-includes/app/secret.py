import os


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("secret %s\n" % os.environ.get("APP_SECRET")).encode()]
