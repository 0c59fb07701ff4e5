<?php

use PHPUnit\Framework\TestCase;
use WHMCS\Database\Capsule;
use WHMCS\Module\Server\Hostwright\ApiClient;

/**
 * What every module test shares: WHMCS's parameters for a service on the hostwright server the
 * test run started (HOSTWRIGHT_WHMCS_TEST_* variables), reads of hostwright as WHMCS's
 * credential, bounded waits, and the check after each test that the module log holds no
 * credential and no password.
 */
abstract class GatewayTestCase extends TestCase
{
    /** @var string[] passwords the test used: none may reach the module log */
    protected $passwords = [];

    protected function setUp(): void
    {
        Capsule::reset();
        $GLOBALS['hostwright_module_log'] = [];
        $this->passwords = [];
    }

    protected function tearDown(): void
    {
        $entries = $GLOBALS['hostwright_module_log'];
        // what the module log keeps: the variables to mask are WHMCS's to scrub with, not kept
        $kept = array_map(function (array $entry) {
            unset($entry['mask']);
            return $entry;
        }, $entries);
        $logged = json_encode($kept, JSON_UNESCAPED_SLASHES | JSON_PARTIAL_OUTPUT_ON_ERROR);
        $secrets = array_merge([self::env('TOKEN'), self::env('STAFF_TOKEN')], $this->passwords);
        foreach ($secrets as $secret) {
            self::assertStringNotContainsString($secret, $this->unmasked($logged), 'a secret reached the module log');
        }
        foreach ($entries as $entry) { // and WHMCS is told what to mask in every entry
            self::assertNotEmpty($entry['mask'], "{$entry['action']} logged with nothing to mask");
        }
    }

    protected static function env(string $name): string
    {
        $value = getenv('HOSTWRIGHT_WHMCS_TEST_' . $name);
        if ($value === false || $value === '') {
            self::fail("HOSTWRIGHT_WHMCS_TEST_{$name} is not set: run these tests through tests/e2e/test_whmcs_module.py");
        }
        return $value;
    }

    /** WHMCS's module parameters for service $serviceId of a unified product on the test server. */
    protected function params(int $serviceId, array $extra = []): array
    {
        $gateway = parse_url(self::env('GATEWAY'));
        $password = 'Pass-' . $serviceId . '-' . bin2hex(random_bytes(4));
        $this->passwords[] = $password;
        return array_replace([
            'serviceid' => $serviceId,
            'userid' => 77,
            'pid' => 1,
            'serverid' => 1,
            'domain' => "whmcs{$serviceId}.example.org",
            'username' => "wh{$serviceId}",
            'password' => $password,
            'moduletype' => 'hostwright',
            'producttype' => 'hostingaccount',
            'server' => true,
            'serverip' => '',
            'serverhostname' => $gateway['host'],
            'serverport' => (string) $gateway['port'],
            'serversecure' => false,
            'serverusername' => '',
            'serverpassword' => '',
            'serveraccesshash' => self::env('TOKEN'),
            'configoption1' => 'unified',
            'configoption2' => 'whmcs-e2e',
            'configoption3' => '1000',
            'configoption4' => '5000',
            'configoption5' => '',
            'configoption6' => '',
            'configoption7' => '',
            'configoption8' => '10',
            'configoption9' => '2',
            'configoption10' => '',
            'configoption11' => '',
            'configoption12' => '',
            'configoption13' => '',
            'configoption14' => '',
            'configoption15' => '',
            'customfields' => [],
            'configoptions' => [],
            'clientsdetails' => ['userid' => 77, 'email' => 'client77@example.org'],
        ], $extra);
    }

    /** The same parameters with the gateway on a port where nothing listens. */
    protected function paramsOfClosedGateway(int $serviceId): array
    {
        return $this->params($serviceId, ['serverport' => self::env('CLOSED_PORT')]);
    }

    /** hostwright as WHMCS's credential, for the test's own reads. */
    protected function hostwright(): ApiClient
    {
        return new ApiClient(self::env('GATEWAY'), self::env('TOKEN'));
    }

    protected function service(int $serviceId): array
    {
        return $this->hostwright()->get("/v1/services/{$serviceId}", [], 'test');
    }

    /** How many commands the module recorded for $action on the service (by their ids). */
    protected function commandsRecorded(int $serviceId, string $action): int
    {
        $events = $this->hostwright()->get("/v1/services/{$serviceId}/events", [], 'test')['events'];
        $ids = [];
        foreach ($events as $event) {
            $id = (string) ($event['data']['command_id'] ?? '');
            if (strpos($id, "whmcs-{$serviceId}-{$action}-") === 0) {
                $ids[$id] = true;
            }
        }
        return count($ids);
    }

    /** Waits (bounded, scaled to the machine) until $condition holds; fails naming $what. */
    protected function waitUntil(callable $condition, float $seconds, string $what): void
    {
        $scale = (float) (getenv('HOSTWRIGHT_WHMCS_TEST_TIME_SCALE') ?: 1);
        $deadline = microtime(true) + $seconds * max(1.0, $scale);
        while (microtime(true) < $deadline) {
            if ($condition()) {
                return;
            }
            usleep(100000);
        }
        self::fail("timed out after {$seconds} s (x{$scale}) waiting for {$what}");
    }

    protected function waitForStatus(int $serviceId, string $status, float $seconds = 60): void
    {
        $seen = null;
        $this->waitUntil(function () use ($serviceId, $status, &$seen) {
            $seen = $this->service($serviceId);
            return $seen['status'] === $status;
        }, $seconds, "service {$serviceId} {$status} (last seen: " . json_encode($seen) . ')');
    }

    /** Orders the service through the module and waits until hostwright has built it. */
    protected function activeService(int $serviceId, array $extra = []): array
    {
        $params = $this->params($serviceId, $extra);
        self::assertSame('success', hostwright_CreateAccount($params));
        $this->waitForStatus($serviceId, 'active');
        return $params;
    }

    /** The module log with its masked values taken out (what is left must hold no secret). */
    private function unmasked(string $logged): string
    {
        return str_replace(ApiClient::MASK, '', $logged);
    }
}
