"""Backbones (plain nn.Modules), the input encoder and the heads; tasks live in models.tasks."""
