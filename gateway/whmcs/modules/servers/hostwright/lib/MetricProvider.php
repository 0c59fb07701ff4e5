<?php

namespace WHMCS\Module\Server\Hostwright;

use WHMCS\UsageBilling\Contracts\Metrics\MetricInterface;
use WHMCS\UsageBilling\Contracts\Metrics\ProviderInterface;
use WHMCS\UsageBilling\Metrics\Metric;
use WHMCS\UsageBilling\Metrics\Units\Accounts;
use WHMCS\UsageBilling\Metrics\Units\Domains;
use WHMCS\UsageBilling\Metrics\Units\MegaBytes;
use WHMCS\UsageBilling\Metrics\Units\WholeNumber;
use WHMCS\UsageBilling\Metrics\Usage;

/**
 * WHMCS's metric billing fed by hostwright's /v1/billing/usage: the figures billed are the
 * figures the customer's gauges show (both read one row in hostwright).
 *
 * Tenants are keyed by domain, the ListAccounts unique identifier. metrics() names the
 * metrics of GET /v1/billing/metrics without a server call: WHMCS asks for them on product
 * pages, where no server may answer. usage() and tenantUsage() run in WHMCS's cron: a gateway
 * that fails them is logged (logModuleCall) and they give no usage ([]), never an exception.
 */
class MetricProvider implements ProviderInterface
{
    /** @var array the module parameters of the server */
    private $params;
    /** @var ApiClient|null */
    private $client;

    public function __construct(array $params, ?ApiClient $client = null)
    {
        $this->params = $params;
        $this->client = $client;
    }

    public function metrics()
    {
        return [
            'disk_mb' => new Metric('disk_mb', 'Disk space', MetricInterface::TYPE_SNAPSHOT, new MegaBytes()),
            'bandwidth_mb' => new Metric('bandwidth_mb', 'Bandwidth', MetricInterface::TYPE_PERIOD_MONTH, new MegaBytes()),
            'mail_accounts' => new Metric('mail_accounts', 'Email accounts', MetricInterface::TYPE_SNAPSHOT, new Accounts('Email accounts', 'Email account', 'Email accounts')),
            'databases' => new Metric('databases', 'Databases', MetricInterface::TYPE_SNAPSHOT, new WholeNumber('Databases', 'Database', 'Databases')),
            'web_domains' => new Metric('web_domains', 'Web domains', MetricInterface::TYPE_SNAPSHOT, new Domains('Web domains', 'Web domain', 'Web domains')),
        ];
    }

    /** Every tenant's metrics with their usage, keyed by the tenant's domain; [] when hostwright fails. */
    public function usage()
    {
        $tenants = $this->tenants('usage');
        if ($tenants === null) {
            return [];
        }
        $usage = [];
        foreach ($tenants as $domain => $tenant) {
            $usage[$domain] = $this->withUsage($tenant);
        }
        return $usage;
    }

    /**
     * One tenant's (its domain's) metrics with their usage; no usage for one hostwright lacks;
     * [] when hostwright fails.
     */
    public function tenantUsage($tenant)
    {
        $tenants = $this->tenants('tenantUsage');
        if ($tenants === null) {
            return [];
        }
        $found = $tenants[strtolower((string) $tenant)] ?? null;
        return $found === null ? array_values($this->metrics()) : $this->withUsage($found);
    }

    /** hostwright's tenants keyed by domain; null when it failed (logged as $function). */
    private function tenants(string $function): ?array
    {
        try {
            $client = $this->client ?? ApiClient::fromParams($this->params);
            $answer = $client->get('/v1/billing/usage', ['key' => 'domain'], 'MetricProvider');
        } catch (GatewayError $error) {
            if (function_exists('logModuleCall')) {
                $secrets = array_values(array_filter([ApiClient::tokenOf($this->params)], 'strlen'));
                logModuleCall(ApiClient::MODULE, 'MetricProvider::' . $function, [], $error->getMessage(), '', $secrets ?: [ApiClient::MASK]);
            }
            return null;
        }
        return is_array($answer['tenants'] ?? null) ? $answer['tenants'] : [];
    }

    private function withUsage(array $tenant): array
    {
        $values = is_array($tenant['metrics'] ?? null) ? $tenant['metrics'] : [];
        $collectedAt = isset($tenant['collected_at']) ? strtotime((string) $tenant['collected_at']) : false;
        $metrics = [];
        foreach ($this->metrics() as $name => $metric) {
            if (!array_key_exists($name, $values)) {
                $metrics[] = $metric;
                continue;
            }
            $usage = $collectedAt === false ? new Usage($values[$name]) : new Usage($values[$name], $collectedAt);
            $metrics[] = $metric->withUsage($usage);
        }
        return $metrics;
    }
}
