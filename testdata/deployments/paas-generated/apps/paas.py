import os


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    body = "%s on %s\n" % (os.environ.get("APP_NAME"), os.environ.get("APP_DOMAIN"))
    return [body.encode()]
