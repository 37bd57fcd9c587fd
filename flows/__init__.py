"""Prefect orchestration of the yolox stages. No ML logic lives here: tasks call functions in yolox/."""
