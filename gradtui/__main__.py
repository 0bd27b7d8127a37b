"""``python -m gradtui``."""

from gradtui.cli import main

if __name__ == "__main__":
    main()
