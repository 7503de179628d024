"""A Flask-shaped app: an object named app, not application."""


class Flask:
    def __init__(self, name):
        self.name = name

    def __call__(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [b"flask says hi from " + self.name.encode() + b"\n"]


app = Flask("flaskapp")
