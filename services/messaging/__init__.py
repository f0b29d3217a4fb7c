"""Reminders and patient education through channels: templates, protective rules, queue, adapters, sender."""
