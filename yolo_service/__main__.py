"""``python -m yolo_service`` is the ``yolo-service`` command."""

from .cli import main

raise SystemExit(main())
