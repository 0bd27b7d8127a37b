"""``python -m gradtui``."""

from gradtui.cli import app

if __name__ == "__main__":
    app(prog_name="gradtui")
