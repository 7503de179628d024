import os


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    body = "hello from %s uid %d\n" % (os.environ.get("APP_NAME", "?"), os.getuid())
    return [body.encode()]
