<?php
/**
 * hostwright's WHMCS provisioning module: what a provider installs into WHMCS so that orders,
 * lifecycle, billing and the client area run through hostwright.
 *
 * Thin on purpose: every decision stays in hostwright. A lifecycle function sends one call to
 * hostwright's gateway (README "WHMCS module", docs/whmcs.md) and returns "success" as soon as
 * hostwright has recorded it; the work runs in hostwright's queue. Every failure — a gateway
 * that cannot be reached or does not answer in time, a refused credential, a refusal (409,
 * 422) — comes back as a readable string, never as a PHP error.
 *
 * The classes live in lib/ (namespace WHMCS\Module\Server\Hostwright, autoloaded by WHMCS).
 */

use WHMCS\Database\Capsule;
use WHMCS\Module\Server\Hostwright\ApiClient;
use WHMCS\Module\Server\Hostwright\GatewayError;
use WHMCS\Module\Server\Hostwright\MetricProvider;
use WHMCS\Module\Server\Hostwright\PendingCalls;
use WHMCS\Module\Server\Hostwright\ProductOptions;
use WHMCS\Module\Server\Hostwright\ServiceCommands;
use WHMCS\Service\Status;

if (!defined('WHMCS')) {
    die('This file cannot be accessed directly');
}

function hostwright_MetaData()
{
    return [
        'DisplayName' => 'hostwright',
        'APIVersion' => '1.1',
        'RequiresServer' => true,
        'DefaultNonSSLPort' => '8080',
        'DefaultSSLPort' => '443',
        'ServiceSingleSignOnLabel' => 'Open the hosting dashboard',
        'ListAccountsUniqueIdentifierDisplayName' => 'Domain',
        'ListAccountsUniqueIdentifierField' => 'domain',
        'ListAccountsProductField' => 'configoption2',
    ];
}

function hostwright_ConfigOptions()
{
    return ProductOptions::definitions();
}

/**
 * The Hestia package field's choices: "default" and the plan names hostwright's services use.
 * hostwright has no list of packages of its own (it makes one per plan on each node).
 */
function hostwright_PackageLoader(array $params)
{
    try {
        $services = hostwright_all_services(ApiClient::fromParams($params), 'PackageLoader');
    } catch (GatewayError $error) {
        throw new \Exception($error->getMessage()); // WHMCS shows a loader's exception
    }
    $packages = ['default' => 'default'];
    foreach ($services as $service) {
        $name = $service['plan']['package'] ?? null;
        if (is_string($name) && $name !== '') {
            $packages[$name] = $name;
        }
    }
    ksort($packages);
    return $packages;
}

function hostwright_TestConnection(array $params)
{
    try {
        $client = ApiClient::fromParams($params);
        $client->get('/healthz', [], 'TestConnection');
        $client->get('/v1/services', ['limit' => 1], 'TestConnection');
        return ['success' => true, 'error' => ''];
    } catch (\Throwable $error) {
        return ['success' => false, 'error' => hostwright_readable($error, __FUNCTION__, $params)];
    }
}

function hostwright_CreateAccount(array $params)
{
    return hostwright_attempt(__FUNCTION__, $params, function () use ($params) {
        $mode = ProductOptions::mode($params);
        $body = [
            'service_id' => hostwright_service_id($params),
            'client_id' => hostwright_client_id($params),
            'mode' => $mode,
            'domain' => ProductOptions::domain($params),
            'plan' => ProductOptions::plan($params),
        ];
        $username = trim((string) ($params['username'] ?? ''));
        if ($username !== '') {
            $body['username'] = $username;
        }
        $password = (string) ($params['password'] ?? '');
        if ($password !== '') {
            $body['password'] = $password;
        }
        if ($mode === 'vanity') {
            $label = ProductOptions::label($params);
            if ($label === '') {
                return 'a vanity order needs its label: the product custom field "'
                    . hostwright_label_field($params) . '" is empty';
            }
            $body['label'] = $label;
        }
        $ordered = hostwright_commands($params)->order($body);
        $built = is_string($ordered['domain'] ?? null) ? $ordered['domain'] : $body['domain'];
        if ($mode === 'vanity' && trim((string) ($params['domain'] ?? '')) === '' && $built !== '') {
            // WHMCS keys server sync and metric billing by the service's domain: give it the built one
            Capsule::table('tblhosting')
                ->where('id', (int) hostwright_service_id($params))
                ->update(['domain' => $built]);
        }
        return 'success';
    });
}

function hostwright_SuspendAccount(array $params)
{
    $reason = hostwright_truncated(trim((string) ($params['suspendreason'] ?? '')), 500);
    return hostwright_lifecycle($params, 'suspend', $reason === '' ? [] : ['reason' => $reason], [], __FUNCTION__);
}

function hostwright_UnsuspendAccount(array $params)
{
    return hostwright_lifecycle($params, 'unsuspend', [], [], __FUNCTION__);
}

function hostwright_TerminateAccount(array $params)
{
    return hostwright_lifecycle($params, 'terminate', [], [], __FUNCTION__);
}

function hostwright_ChangePackage(array $params)
{
    $plan = ProductOptions::plan($params);
    return hostwright_lifecycle($params, 'change-plan', ['plan' => $plan], ['plan' => $plan], __FUNCTION__);
}

/** The customer's Hestia password changes on every node of the service (hostwright seals it). */
function hostwright_ChangePassword(array $params)
{
    $password = (string) ($params['password'] ?? '');
    if ($password === '') {
        return 'no new password was given';
    }
    return hostwright_lifecycle(
        $params,
        'change-password',
        ['password' => $password],
        ['password' => hash('sha256', $password)], // only ever HMAC'd again (PendingCalls)
        __FUNCTION__,
        [$password]
    );
}

function hostwright_AdminCustomButtonArray()
{
    return [
        'Redeploy' => 'Redeploy',
        'Factory reset' => 'FactoryReset',
        'Verify & Repair' => 'VerifyRepair',
        'Sync usage' => 'SyncUsage',
        'Issue SSL' => 'IssueSsl',
    ];
}

function hostwright_ClientAreaCustomButtonArray()
{
    return ['Sync now' => 'SyncNow'];
}

function hostwright_Redeploy(array $params)
{
    return hostwright_lifecycle($params, 'redeploy', [], [], __FUNCTION__);
}

function hostwright_FactoryReset(array $params)
{
    return hostwright_lifecycle($params, 'factory-reset', [], [], __FUNCTION__);
}

function hostwright_VerifyRepair(array $params)
{
    return hostwright_lifecycle($params, 'verify-repair', [], [], __FUNCTION__);
}

function hostwright_SyncUsage(array $params)
{
    return hostwright_lifecycle($params, 'sync-usage', [], [], __FUNCTION__);
}

function hostwright_SyncNow(array $params)
{
    return hostwright_lifecycle($params, 'sync-usage', [], [], __FUNCTION__);
}

/** Issues (again) the certificate of every role the service has SSL for. */
function hostwright_IssueSsl(array $params)
{
    return hostwright_attempt(__FUNCTION__, $params, function () use ($params) {
        $client = ApiClient::fromParams($params);
        $id = rawurlencode(hostwright_service_id($params));
        try {
            $ssl = $client->get("/v1/services/{$id}/ssl", [], 'IssueSsl');
        } catch (GatewayError $error) {
            if ($error->status() === 405) { // no SSL routes: the gateway runs with SSL off
                return 'hostwright has SSL turned off (HOSTWRIGHT_SSL): nothing to issue';
            }
            throw $error;
        }
        $roles = [];
        foreach ($ssl['certificates'] ?? [] as $certificate) {
            if (is_string($certificate['role'] ?? null)) {
                $roles[$certificate['role']] = true;
            }
        }
        if (!$roles) {
            return 'hostwright has no certificate to issue for this service yet';
        }
        foreach (array_keys($roles) as $role) {
            $client->post("/v1/services/{$id}/ssl/" . rawurlencode($role) . '/issue', [], null, 'IssueSsl');
        }
        return 'success';
    });
}

/** Every service hostwright holds that is not terminated, for WHMCS's server sync. */
function hostwright_ListAccounts(array $params)
{
    try {
        $accounts = [];
        foreach (hostwright_all_services(ApiClient::fromParams($params), 'ListAccounts') as $service) {
            if (in_array($service['status'] ?? '', ['terminating', 'terminated'], true)) {
                continue;
            }
            $ordered = strtotime((string) ($service['ordered_at'] ?? ''));
            $accounts[] = [
                'email' => '',
                'username' => (string) ($service['username'] ?? ''),
                'domain' => (string) ($service['domain'] ?? ''),
                'uniqueIdentifier' => (string) ($service['domain'] ?? ''),
                'product' => (string) ($service['plan']['package'] ?? ''),
                'primaryip' => '',
                'created' => $ordered === false ? '' : date('Y-m-d H:i:s', $ordered), // WHMCS's local time
                'status' => hostwright_account_status((string) ($service['status'] ?? '')),
            ];
        }
        return ['success' => true, 'accounts' => $accounts];
    } catch (\Throwable $error) {
        return ['success' => false, 'error' => hostwright_readable($error, __FUNCTION__, $params)];
    }
}

/** WHMCS's status of a service hostwright has as $status: only a built one is Active. */
function hostwright_account_status(string $status): string
{
    switch ($status) {
        case 'active':
            return Status::ACTIVE;
        case 'suspended':
            return Status::SUSPENDED;
        default: // provisioning, deploy_failed: ordered, not (yet) running
            return Status::PENDING;
    }
}

/**
 * Disk and bandwidth used and their limits into tblhosting, for every service of this server
 * that hostwright bills: the same figures as the metric billing and the customer's gauges.
 */
function hostwright_UsageUpdate(array $params)
{
    try {
        $client = ApiClient::fromParams($params);
        $limits = [];
        foreach (hostwright_all_services($client, 'UsageUpdate') as $service) {
            $limits[(string) $service['service_id']] = is_array($service['plan'] ?? null) ? $service['plan'] : [];
        }
        $billing = $client->get('/v1/billing/usage', ['key' => 'domain'], 'UsageUpdate');
        $now = date('Y-m-d H:i:s');
        foreach ($billing['tenants'] ?? [] as $tenant) {
            $serviceId = (string) ($tenant['service_id'] ?? '');
            if (!ctype_digit($serviceId)) {
                continue; // not a WHMCS service id
            }
            $plan = $limits[$serviceId] ?? [];
            Capsule::table('tblhosting')
                ->where('id', (int) $serviceId)
                ->where('server', (int) ($params['serverid'] ?? 0))
                ->update([
                    'diskusage' => (int) ($tenant['metrics']['disk_mb'] ?? 0),
                    'disklimit' => (int) ($plan['disk_mb'] ?? 0), // 0: unlimited, as WHMCS reads it
                    'bwusage' => (int) ($tenant['metrics']['bandwidth_mb'] ?? 0),
                    'bwlimit' => (int) ($plan['bandwidth_mb'] ?? 0),
                    'lastupdate' => $now,
                ]);
        }
        return 'success';
    } catch (\Throwable $error) {
        return hostwright_readable($error, __FUNCTION__, $params);
    }
}

function hostwright_MetricProvider(array $params)
{
    return new MetricProvider($params);
}

/**
 * The product page: a button that opens hostwright's client area (the deploy splash, then the
 * dashboard) in a new tab. Its pages cannot be framed, so the link is opened, not embedded; it
 * is minted fresh on each view (it expires).
 */
function hostwright_ClientArea(array $params)
{
    try {
        $link = hostwright_client_link($params);
        return [
            'tabOverviewModuleOutputTemplate' => 'templates/clientarea.tpl',
            'templateVariables' => [
                'hostwrightClientLink' => $link['url'],
                'hostwrightLinkExpiresAt' => (string) ($link['expires_at'] ?? ''),
            ],
        ];
    } catch (\Throwable $error) {
        return [
            'tabOverviewModuleOutputTemplate' => 'templates/error.tpl',
            'templateVariables' => ['hostwrightError' => hostwright_readable($error, __FUNCTION__, $params)],
        ];
    }
}

function hostwright_ServiceSingleSignOn(array $params)
{
    try {
        return ['success' => true, 'redirectTo' => hostwright_client_link($params)['url']];
    } catch (\Throwable $error) {
        return ['success' => false, 'errorMsg' => hostwright_readable($error, __FUNCTION__, $params)];
    }
}

/** The service as hostwright sees it, on the admin's service page. */
function hostwright_AdminServicesTabFields(array $params)
{
    try {
        $client = ApiClient::fromParams($params);
        $id = hostwright_service_id($params);
        $service = $client->get('/v1/services/' . rawurlencode($id), [], 'AdminServicesTabFields');
        $operation = $service['operation'] ?? null;
        $progress = $service['progress'] ?? [];
        $console = $client->baseUrl() . '/admin/services/' . rawurlencode($id);
        return [
            'hostwright status' => hostwright_html((string) ($service['status'] ?? 'unknown')),
            'Operation' => is_array($operation)
                ? hostwright_html($operation['action'] . ' (' . $operation['state'] . ')')
                : 'none',
            'Progress' => hostwright_html(sprintf(
                '%d of %d steps (%d%%)%s',
                (int) ($progress['done'] ?? 0),
                (int) ($progress['total'] ?? 0),
                (int) ($progress['percent'] ?? 0),
                empty($progress['current_step']) ? '' : ', now: ' . $progress['current_step']
            )),
            'Last error' => hostwright_html((string) ($service['last_error'] ?? '') ?: 'none'),
            'Staff console' => '<a href="' . hostwright_html($console) . '" target="_blank" rel="noopener">'
                . 'Open this service in hostwright\'s console</a>',
        ];
    } catch (\Throwable $error) {
        return ['hostwright' => hostwright_html(hostwright_readable($error, __FUNCTION__, $params))];
    }
}

// --- shared by the functions above -------------------------------------------------------

/** Runs a lifecycle call: "success" once hostwright recorded it, else why not. */
function hostwright_lifecycle(array $params, string $action, array $body, array $keyArgs, string $function, array $secrets = [])
{
    return hostwright_attempt($function, $params, function () use ($params, $action, $body, $keyArgs, $function, $secrets) {
        hostwright_commands($params)->act(hostwright_service_id($params), $action, $body, $keyArgs, $function, $secrets);
        return 'success';
    });
}

/** $call's answer, or the readable message of whatever went wrong in it. */
function hostwright_attempt(string $function, array $params, callable $call)
{
    try {
        return $call();
    } catch (\Throwable $error) {
        return hostwright_readable($error, $function, $params);
    }
}

/**
 * The message WHMCS shows for $error. A GatewayError is readable as it is (ApiClient logged
 * the call); anything else is a fault in the module or WHMCS: logged, and said plainly.
 */
function hostwright_readable(\Throwable $error, string $function, array $params): string
{
    if ($error instanceof GatewayError) {
        return $error->getMessage();
    }
    $secrets = array_values(array_filter([
        (string) ($params['serveraccesshash'] ?? ''),
        (string) ($params['serverpassword'] ?? ''),
        (string) ($params['password'] ?? ''),
    ], 'strlen'));
    if (function_exists('logModuleCall')) {
        logModuleCall(ApiClient::MODULE, $function, ['serviceid' => $params['serviceid'] ?? null], get_class($error) . ': ' . $error->getMessage(), $error->getTraceAsString(), $secrets);
    }
    $message = str_replace($secrets, ApiClient::MASK, $error->getMessage());
    return 'the hostwright module failed (' . get_class($error) . ': ' . $message . '); see the module log';
}

function hostwright_commands(array $params): ServiceCommands
{
    return new ServiceCommands(ApiClient::fromParams($params), new PendingCalls(ApiClient::tokenOf($params)));
}

function hostwright_client_link(array $params): array
{
    $id = rawurlencode(hostwright_service_id($params));
    $link = ApiClient::fromParams($params)->post("/v1/services/{$id}/client-link", [], null, 'ClientLink');
    if (!is_string($link['url'] ?? null)) {
        throw new GatewayError('hostwright gave no client link');
    }
    return $link;
}

/** Every service hostwright holds, page by page. */
function hostwright_all_services(ApiClient $client, string $action): array
{
    $services = [];
    $cursor = null;
    $seen = [];
    do {
        $query = ['limit' => 1000] + ($cursor === null ? [] : ['cursor' => $cursor]);
        $page = $client->get('/v1/services', $query, $action);
        foreach ($page['services'] ?? [] as $service) {
            $services[] = $service;
        }
        $cursor = $page['next_cursor'] ?? null;
        if (is_string($cursor) && isset($seen[$cursor])) {
            throw new GatewayError('hostwright gave the same page of services twice: try again later');
        }
        $seen[(string) $cursor] = true;
    } while (is_string($cursor) && $cursor !== '');
    return $services;
}

function hostwright_service_id(array $params): string
{
    return (string) ($params['serviceid'] ?? '');
}

function hostwright_client_id(array $params): string
{
    $id = $params['userid'] ?? ($params['clientsdetails']['userid'] ?? ($params['clientsdetails']['id'] ?? ''));
    return (string) $id;
}

function hostwright_label_field(array $params): string
{
    $field = trim((string) ($params['configoption' . ProductOptions::LABEL_FIELD] ?? ''));
    return $field === '' ? ProductOptions::DEFAULT_LABEL_FIELD : $field;
}

/**
 * $text cut to $max characters without mbstring (the module needs only curl); text that is
 * not UTF-8 is cut by bytes, and the call then says it is not UTF-8.
 */
function hostwright_truncated(string $text, int $max): string
{
    if (preg_match('/^.{0,' . $max . '}/su', $text, $kept) === 1) {
        return $kept[0];
    }
    return substr($text, 0, $max);
}

function hostwright_html(string $text): string
{
    return htmlspecialchars($text, ENT_QUOTES, 'UTF-8');
}
