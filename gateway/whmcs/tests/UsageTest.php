<?php

use WHMCS\Database\Capsule;
use WHMCS\Module\Server\Hostwright\ApiClient;
use WHMCS\Module\Server\Hostwright\MetricProvider;
use WHMCS\UsageBilling\Contracts\Metrics\MetricInterface;
use WHMCS\UsageBilling\Contracts\Metrics\ProviderInterface;
use WHMCS\UsageBilling\Metrics\NoUsage;

/** Server sync, the usage import and metric billing: the figures are hostwright's bill's. */
class UsageTest extends GatewayTestCase
{
    public function testListAccountsListsEveryLiveServiceAsWhmcsMatchesThem(): void
    {
        $params = $this->activeService(5401);
        self::assertSame('success', hostwright_SuspendAccount($params));
        $this->waitForStatus(5401, 'suspended');

        $listed = hostwright_ListAccounts($this->params(0));
        self::assertTrue($listed['success']);
        $accounts = [];
        foreach ($listed['accounts'] as $account) {
            $accounts[$account['uniqueIdentifier']] = $account;
        }
        $account = $accounts['whmcs5401.example.org'];
        self::assertSame('whmcs5401.example.org', $account['domain']);
        self::assertSame('wh5401', $account['username']);
        self::assertSame('whmcs-e2e', $account['product']); // configoption2, ListAccountsProductField
        self::assertSame(\WHMCS\Service\Status::SUSPENDED, $account['status']);
        self::assertMatchesRegularExpression('/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/', $account['created']);

        // created is WHMCS's local time (date(), as WHMCS stores its dates), not UTC
        $zone = date_default_timezone_get();
        date_default_timezone_set('Pacific/Auckland');
        try {
            $local = hostwright_ListAccounts($this->params(0));
            $ordered = strtotime($this->service(5401)['ordered_at']);
            $expected = date('Y-m-d H:i:s', $ordered);
        } finally {
            date_default_timezone_set($zone);
        }
        $created = array_column($local['accounts'], 'created', 'uniqueIdentifier')['whmcs5401.example.org'];
        self::assertSame($expected, $created);
        self::assertNotSame(gmdate('Y-m-d H:i:s', $ordered), $created);

        $down = hostwright_ListAccounts($this->paramsOfClosedGateway(0));
        self::assertFalse($down['success']);
        self::assertStringContainsString('cannot be reached', $down['error']);
    }

    public function testOnlyABuiltServiceIsActiveInWhmcs(): void
    {
        self::assertSame(\WHMCS\Service\Status::ACTIVE, hostwright_account_status('active'));
        self::assertSame(\WHMCS\Service\Status::SUSPENDED, hostwright_account_status('suspended'));
        self::assertSame(\WHMCS\Service\Status::PENDING, hostwright_account_status('provisioning'));
        self::assertSame(\WHMCS\Service\Status::PENDING, hostwright_account_status('deploy_failed'));

        // and so ListAccounts says it of a service hostwright is still building
        self::assertSame('success', hostwright_CreateAccount($this->params(5404)));
        $status = null;
        $account = null;
        // listed once hostwright's views have it; the status read before and after the listing equal
        $this->waitUntil(function () use (&$status, &$account) {
            $status = $this->service(5404)['status'];
            $listed = hostwright_ListAccounts($this->params(0));
            $account = array_column($listed['accounts'], null, 'uniqueIdentifier')['whmcs5404.example.org'] ?? null;
            return $account !== null && $this->service(5404)['status'] === $status;
        }, 30, 'service 5404 to be listed');
        self::assertSame(hostwright_account_status($status), $account['status']);
    }

    public function testUsageUpdateWritesHostwrightsFiguresIntoTheServiceRecords(): void
    {
        $this->activeService(5402);
        $this->listedUsage(5402);
        Capsule::$tables['tblhosting'] = [
            ['id' => 5402, 'server' => 1, 'domain' => 'whmcs5402.example.org', 'diskusage' => 0, 'disklimit' => 0, 'bwusage' => 0, 'bwlimit' => 0, 'lastupdate' => '0000-00-00 00:00:00'],
            ['id' => 5402, 'server' => 2, 'domain' => 'elsewhere.example.org', 'diskusage' => 7, 'disklimit' => 7, 'bwusage' => 7, 'bwlimit' => 7, 'lastupdate' => 'never'],
        ];
        self::assertSame('success', hostwright_UsageUpdate($this->params(0)));
        $bill = $this->hostwright()->get('/v1/services/5402/billing', [], 'test');
        $row = Capsule::table('tblhosting')->where('id', 5402)->where('server', 1)->first();
        self::assertSame($bill['metrics']['disk_mb'], $row->diskusage);
        self::assertSame(1000, $row->disklimit);
        self::assertSame($bill['metrics']['bandwidth_mb'], $row->bwusage);
        self::assertSame(5000, $row->bwlimit);
        self::assertNotSame('0000-00-00 00:00:00', $row->lastupdate);
        // another server's service record is not this server's to write
        self::assertSame('never', Capsule::table('tblhosting')->where('server', 2)->first()->lastupdate);

        self::assertStringContainsString('cannot be reached', hostwright_UsageUpdate($this->paramsOfClosedGateway(0)));
    }

    public function testMetricProviderUsageIsHostwrightsBillForEveryTenant(): void
    {
        $this->activeService(5403);
        $this->listedUsage(5403);
        $provider = hostwright_MetricProvider($this->params(0));
        self::assertInstanceOf(ProviderInterface::class, $provider);

        // the bill read before and after the provider's reads: equal, unless a usage sync
        // landed in between (other services of the run sync too); then read again
        for ($attempt = 1; ; $attempt++) {
            $bill = $this->bill();
            $usage = $provider->usage();
            $tenants = [];
            foreach (array_keys($bill) as $domain) {
                $tenants[$domain] = $provider->tenantUsage($domain);
            }
            if ($this->bill() === $bill || $attempt === 5) {
                break;
            }
        }
        self::assertNotEmpty($bill);
        self::assertSame(array_keys($bill), array_keys($usage));
        foreach ($bill as $domain => $tenant) {
            self::assertSame($tenant['metrics'], $this->values($usage[$domain]), $domain);
            self::assertSame($tenant['metrics'], $this->values($tenants[$domain]), $domain);
        }
        self::assertGreaterThan(0, $this->values($usage['whmcs5403.example.org'])['web_domains']);

        // a tenant hostwright does not bill: the metrics without usage
        foreach ($provider->tenantUsage('unknown.example.org') as $metric) {
            self::assertInstanceOf(NoUsage::class, $metric->usage());
        }
    }

    public function testMetricsNeedNoServerAndAreHostwrightsMetrics(): void
    {
        // a provider whose server cannot be reached still names its metrics
        $provider = new MetricProvider($this->paramsOfClosedGateway(0));
        $metrics = $provider->metrics();
        self::assertSame([], $GLOBALS['hostwright_module_log']); // no call was made

        $definitions = $this->hostwright()->get('/v1/billing/metrics', [], 'test')['metrics'];
        $types = ['snapshot' => MetricInterface::TYPE_SNAPSHOT, 'period_month' => MetricInterface::TYPE_PERIOD_MONTH];
        self::assertSame(array_column($definitions, 'name'), array_keys($metrics));
        foreach ($definitions as $definition) {
            $metric = $metrics[$definition['name']];
            self::assertInstanceOf(MetricInterface::class, $metric);
            self::assertSame($definition['name'], $metric->systemName());
            self::assertSame($definition['display_name'], $metric->displayName());
            self::assertSame($types[$definition['type']], $metric->type());
        }

        // usage does need the server: run by WHMCS's cron, it logs the failure and gives none
        self::assertSame([], $provider->usage());
        self::assertSame([], $provider->tenantUsage('whmcs5403.example.org'));
        $logged = array_column($GLOBALS['hostwright_module_log'], 'response', 'action');
        self::assertStringContainsString('cannot be reached', $logged['MetricProvider::usage']);
        self::assertStringContainsString('cannot be reached', $logged['MetricProvider::tenantUsage']);
    }

    /** Asks hostwright for a usage sync of the service's nodes; waits for its figures. */
    private function listedUsage(int $serviceId): void
    {
        $this->hostwright()->post('/v1/usage/refresh', ['service_ids' => [(string) $serviceId]], null, 'test');
        $this->waitUntil(function () use ($serviceId) {
            return $this->hostwright()->get("/v1/services/{$serviceId}/billing", [], 'test')['collected_at'] !== null;
        }, 60, "service {$serviceId}'s usage to be listed");
    }

    private function bill(): array
    {
        return $this->hostwright()->get('/v1/billing/usage', ['key' => 'domain'], 'test')['tenants'];
    }

    /** metric name => its usage's value, as /v1/billing/usage gives them (whole numbers). */
    private function values(array $metrics): array
    {
        $values = [];
        foreach ($metrics as $metric) {
            $value = $metric->usage()->value();
            $values[$metric->systemName()] = $value == (int) $value ? (int) $value : $value;
        }
        return $values;
    }
}
