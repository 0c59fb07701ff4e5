"""Action name (``TaskMessage.action``) → the step action that performs it on a Hestia node.

Each action's params and outputs are in its docstring. One flat table serves every role:
in unified mode one node takes web, mail and DNS tasks, and every role needs ``ensure_user``.
"""

from __future__ import annotations

from handlers import (
    dns_steps,
    mail_steps,
    mailbox_steps,
    package_steps,
    suspension_steps,
    user_steps,
    web_steps,
)
from handlers.step import StepAction

STEP_ACTIONS: dict[str, StepAction] = {
    "ensure_package": package_steps.ensure_package,
    "remove_unused_packages": package_steps.remove_unused_packages,
    "ensure_user": user_steps.ensure_user,
    "remove_user": user_steps.remove_user,
    "change_user_password": user_steps.change_user_password,
    "ensure_web_domain": web_steps.ensure_web_domain,
    "ensure_php": web_steps.ensure_php,
    "remove_web_domain": web_steps.remove_web_domain,
    "ensure_mail_domain": mail_steps.ensure_mail_domain,
    "ensure_dkim": mail_steps.ensure_dkim,
    "ensure_mailbox": mail_steps.ensure_mailbox,
    "remove_mailbox": mail_steps.remove_mailbox,
    "remove_mail_domain": mail_steps.remove_mail_domain,
    "ensure_dns_zone": dns_steps.ensure_dns_zone,
    "ensure_dns_records": dns_steps.ensure_dns_records,
    "ensure_dns_record": dns_steps.ensure_dns_record,
    "remove_dns_record": dns_steps.remove_dns_record,
    "remove_dns_zone": dns_steps.remove_dns_zone,
    "suspend_user": suspension_steps.suspend_user,
    "unsuspend_user": suspension_steps.unsuspend_user,
    "suspend_dns_record": suspension_steps.suspend_dns_record,
    "unsuspend_dns_record": suspension_steps.unsuspend_dns_record,
    "suspend_mailbox": mailbox_steps.suspend_mailbox,
    "unsuspend_mailbox": mailbox_steps.unsuspend_mailbox,
    "ensure_mailbox_quota": mailbox_steps.ensure_mailbox_quota,
    "change_mailbox_password": mailbox_steps.change_mailbox_password,
}
