from __future__ import annotations

from gunrunner.cli import main

if __name__ == "__main__":
    main()
