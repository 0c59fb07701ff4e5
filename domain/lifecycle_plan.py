"""Suspend, unsuspend, change-plan and change-password runs: which idempotent steps, where.

``plan_suspend``, ``plan_unsuspend``, ``plan_change_plan`` and ``plan_change_password``
consume what ``plan_deploy`` consumes (the service's facts, its placement, the provider's
settings, the nodes' addresses) and emit ``StepSpec``s (domain/step_chain.py), through
deploy_plan's ``RunPlan``: each mode's steps live in domain/own_domain_plan.py and
domain/vanity_plan.py. Terminate is ``plan_removal``. Suspend shuts the service's site, mail
and DNS off, keeping everything; unsuspend turns on again what suspend turned off; change plan
puts the service's users on its (new) plan's package and quotas; change password gives the
service's users (and a vanity service's own mailbox) the password the customer chose.

Actions and their params (a handler receives exactly these keys; each also gets ``owner``, the
service id: the handler touches only what carries the service's owner mark; the package steps
of change plan, ``ensure_package`` and ``remove_unused_packages``, get none):

==================== ===== ===================================================================
action               role  params
==================== ===== ===================================================================
suspend_user         any   user (a user not marked as the service's is never touched)
unsuspend_user       any   user
suspend_mailbox      mail  user (the provider's shared mail user), domain, account
unsuspend_mailbox    mail  user, domain, account, quota (optional: MB or "unlimited", set
                           once the mailbox is open again)
ensure_mailbox_quota mail  user, domain, account, quota (MB or "unlimited")
change_user_password any   user, password_sealed (the service's password, sealed; the handler
                           unseals it and runs ``v-change-user-password``)
change_mailbox_password
                     mail  user (the provider's shared mail user), domain, account,
                           password_sealed (``v-change-mail-account-password``)
suspend_dns_record   dns   user (the zone's holder), domain (the zone), record, type, value
unsuspend_dns_record dns   user, domain, record, type, value
==================== ===== ===================================================================

Change plan uses deploy's set-up steps with deploy's params (``ensure_package`` then
``ensure_user`` on the web node, ``ensure_user`` carrying the plan on a mail or DNS node): the
package named after the new plan's limits is made (the old one is never edited) and the user is
moved onto it; then ``remove_unused_packages`` on each node removes the package it left when no
other user there is on it (``change_plan.<role>.packages``).

Split and unified: the service's user on every node the placement touches (web, mail, each DNS
node), once per node. Vanity: the service's own web user; the mailbox ``<label>@<provider
domain>`` on the provider's shared mail user; its record ``<label>`` in the provider's zone on
every DNS node, matched by name, type and value (never a stored id). Never the provider's users,
domain, zone or package.

Change password: split and unified, ``change_user_password`` for the service's user on every
node the placement touches, once per node; vanity, its own web user and its mailbox on the
provider's shared mail user (whose own password is never touched). Nothing depends: every node
is done at once. A service with no password (none ordered, none changed) cannot be planned one.

Step keys: ``<kind>.<role>.<thing>`` with ``@<server_id>`` for per-DNS-node steps
(``suspend.dns.user@dns2``, ``unsuspend.mail.mailbox``, ``change_plan.web.package``,
``change_password.dns.user@dns2``). The steps of a suspend, unsuspend or change-password run
depend on nothing: every node is done at once.
"""

from __future__ import annotations

from domain import own_domain_plan, vanity_plan
from domain.deploy_plan import RunPlan

plan_suspend = RunPlan.switch("suspend")
plan_unsuspend = RunPlan.switch("unsuspend")
plan_change_plan = RunPlan(
    own_domain_plan.change_plan, vanity_plan.change_plan, prefix="change_plan."
)
plan_change_password = RunPlan(own_domain_plan.change_password, vanity_plan.change_password)
