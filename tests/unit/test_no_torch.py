"""The core imports and works with torch and Ultralytics absent (the frontend container has neither)."""

import subprocess
import sys
import textwrap

from yolo_service.workshop.processes import TORCH_MODULES, import_blocker


def run(code: str) -> subprocess.CompletedProcess:
    # The core needs not even numpy: only Pillow, pydantic and httpx.
    source = import_blocker((*TORCH_MODULES, "numpy")) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=60)


def test_core_modules_import_and_work_without_torch():
    result = run(
        """
        import yolo_service, yolo_service.schema, yolo_service.images, yolo_service.drawing, yolo_service.client
        from yolo_service import sample_scene, draw_detections, load_image, encode_image, Detection, Client
        image, shapes = sample_scene()
        decoded = load_image(encode_image(image))
        boxes = [Detection(x_min=s.x_min, y_min=s.y_min, x_max=s.x_max, y_max=s.y_max,
                           class_name=s.class_name, class_id=s.class_id, confidence=0.9) for s in shapes]
        drawn = draw_detections(decoded, boxes)
        print(decoded.size, drawn.getpixel((100, 100)) != decoded.getpixel((100, 100)))
        print(sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "ultralytics"}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["(640, 480) True", "[]"]


def test_predict_without_torch_says_which_extra_to_install():
    result = run(
        """
        from yolo_service import predict, sample_scene, ModelUnavailable
        try:
            predict(sample_scene()[0], "shapes")
        except ModelUnavailable as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'yolo-service[serve]'" in result.stdout, result.stdout
