"""The public API is exactly ``__all__``, kept sorted (as httpx's tests/test_exported_members.py)."""

import inspect
import re
import sys

import yolo_service

#: The public names as the notebooks, the README and the apps use them: none may disappear.
PUBLIC = {
    *("__version__", "box_iou", "color_for", "decode_base64", "download", "draw_detections", "draw_scene"),
    *("encode_base64", "encode_image", "get_settings", "load_image", "predict", "random_scene", "sample_files"),
    *("sample_photos", "sample_scene", "sample_scenes", "Client", "COCO_MODELS", "Detection", "ImageInfo"),
    *("ModelCatalog", "ModelInfo", "ModelRegistry", "PredictOptions", "PredictRequest", "PredictResponse"),
    *("Settings", "Shape", "SHAPE_CLASSES", "BackendUnreachable", "ImageTooLarge", "InvalidImage"),
    *("InvalidRequest", "ModelUnavailable", "NotReady", "Overloaded", "ServiceUnavailable", "Unauthorized"),
    *("UnknownModel", "UnsupportedImageFormat", "YoloServiceError"),
}


def test_all_public_members_are_exported_and_sorted():
    public = [
        name
        for name, value in vars(yolo_service).items()
        if (not name.startswith("_") or name == "__version__") and not inspect.ismodule(value)
    ]
    assert yolo_service.__all__ == sorted(public, key=str.casefold)


def test_no_public_name_is_lost():
    assert PUBLIC - set(yolo_service.__all__) == set()


def test_every_exported_name_is_the_kits_own():
    """Each name is defined by a module of the package (not a third-party object re-exported by accident)."""
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", yolo_service.__version__)  # the one name the package defines
    modules = [m for name, m in sys.modules.items() if name.startswith("yolo_service.")]
    for name in sorted(set(yolo_service.__all__) - {"__version__"}):
        value = getattr(yolo_service, name)
        home = [m.__name__ for m in modules if m.__dict__.get(name) is value]
        defined = getattr(value, "__module__", None)
        assert home, f"{name} is not found in any module of yolo_service"
        if inspect.isclass(value) or inspect.isfunction(value):
            assert defined in home, f"{name} comes from {defined}, not from the kit's modules {home}"
