import os


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    body = "mode %s debug %s\n" % (os.environ.get("APP_MODE"), os.environ.get("APP_DEBUG"))
    return [body.encode()]
