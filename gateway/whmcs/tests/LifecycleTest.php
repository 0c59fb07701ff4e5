<?php

use WHMCS\Database\Capsule;
use WHMCS\Module\Server\Hostwright\PendingCalls;

/** CreateAccount and the lifecycle functions against a running hostwright. */
class LifecycleTest extends GatewayTestCase
{
    public function testCreateAccountRecordsTheOrderAndHostwrightBuildsIt(): void
    {
        $params = $this->params(5001);
        self::assertSame('success', hostwright_CreateAccount($params));

        $service = $this->service(5001);
        self::assertSame('provisioning', $service['status']); // answered at once, built later
        self::assertSame('unified', $service['mode']);
        self::assertSame('whmcs5001.example.org', $service['domain']);
        self::assertSame('77', $service['client_id']);
        self::assertSame('wh5001', $service['username']);
        self::assertSame('whmcs-e2e', $service['plan']['package']);
        self::assertSame(1000, $service['plan']['disk_mb']);
        self::assertSame(5000, $service['plan']['bandwidth_mb']);
        self::assertSame(10, $service['plan']['mail_accounts']);
        self::assertNull($service['plan']['web_domains']); // empty: unlimited
        $this->waitForStatus(5001, 'active');

        // WHMCS calling it again (a retry, an admin's second click): one order recorded
        self::assertSame('success', hostwright_CreateAccount($params));
        self::assertSame(1, $this->commandsRecorded(5001, 'create'));
        $ordered = array_filter($this->hostwright()->get('/v1/services/5001/events', [], 'test')['events'], function ($event) {
            return $event['topic'] === 'Service.Ordered';
        });
        self::assertCount(1, $ordered);
    }

    public function testARetriedCallRecordsOneCommandAndANewCallAnother(): void
    {
        $params = $this->params(5002);
        self::assertSame('success', hostwright_CreateAccount($params));

        // attempt 1: the gateway cannot be reached; the call's key stays pending
        $said = hostwright_SyncUsage($this->paramsOfClosedGateway(5002));
        self::assertStringContainsString('cannot be reached', $said);
        self::assertCount(1, Capsule::table(PendingCalls::TABLE)->get());
        // attempt 2 reaches hostwright, which records it, and its answer is lost on the way back
        $key = (new PendingCalls(self::env('TOKEN')))->keyFor('5002', 'sync-usage', []);
        $this->hostwright()->post('/v1/services/5002/sync-usage', [], $key, 'test');
        self::assertSame(1, $this->commandsRecorded(5002, 'sync-usage'));
        // WHMCS retries the same call: hostwright knows its key and records nothing more
        self::assertSame('success', hostwright_SyncUsage($params));
        self::assertSame(1, $this->commandsRecorded(5002, 'sync-usage'));
        self::assertCount(0, Capsule::table(PendingCalls::TABLE)->get());
        // a genuinely new call of the same kind later on is recorded
        self::assertSame('success', hostwright_SyncUsage($params));
        self::assertSame(2, $this->commandsRecorded(5002, 'sync-usage'));
    }

    public static function buttons(): array
    {
        return [
            'Redeploy' => ['hostwright_Redeploy', 'redeploy', 5701],
            'Factory reset' => ['hostwright_FactoryReset', 'factory-reset', 5702],
            'Verify & Repair' => ['hostwright_VerifyRepair', 'verify-repair', 5703],
            'Sync now' => ['hostwright_SyncNow', 'sync-usage', 5704],
        ];
    }

    /**
     * Each custom button retried after its answer was lost records one command (the same
     * path as SyncUsage above, checked per function).
     *
     * @dataProvider buttons
     */
    public function testARetriedButtonRecordsOneCommand(string $function, string $action, int $serviceId): void
    {
        $params = $this->activeService($serviceId);
        self::assertStringContainsString('cannot be reached', $function($this->paramsOfClosedGateway($serviceId)));
        $key = (new PendingCalls(self::env('TOKEN')))->keyFor((string) $serviceId, $action, []);
        $this->hostwright()->post("/v1/services/{$serviceId}/{$action}", [], $key, 'test');
        self::assertSame(1, $this->commandsRecorded($serviceId, $action));
        self::assertSame('success', $function($params));
        self::assertSame(1, $this->commandsRecorded($serviceId, $action));
        self::assertCount(0, Capsule::table(PendingCalls::TABLE)->get());
    }

    public function testSuspendUnsuspendAndSuspendAgainAreEachRecorded(): void
    {
        $params = $this->activeService(5003);
        self::assertSame('success', hostwright_SuspendAccount($params + ['suspendreason' => 'Overdue on payment']));
        $this->waitForStatus(5003, 'suspended');
        self::assertSame('success', hostwright_SuspendAccount($params)); // satisfied already
        self::assertSame(1, $this->commandsRecorded(5003, 'suspend'));

        self::assertSame('success', hostwright_UnsuspendAccount($params));
        $this->waitForStatus(5003, 'active');
        // the next overdue invoice a month later: a new suspend, not the first one again
        self::assertSame('success', hostwright_SuspendAccount($params));
        $this->waitForStatus(5003, 'suspended');
        self::assertSame(2, $this->commandsRecorded(5003, 'suspend'));

        // a suspended service refuses a redeploy: WHMCS shows why
        self::assertStringContainsString('unsuspend it before redeploy', hostwright_Redeploy($params));
    }

    public function testChangePackageSendsTheNewPlan(): void
    {
        $params = $this->activeService(5004);
        $bigger = array_replace($params, ['configoption3' => '2000', 'configoption9' => 'unlimited']);
        self::assertSame('success', hostwright_ChangePackage($bigger));
        self::assertSame('success', hostwright_ChangePackage($bigger));
        self::assertSame(1, $this->commandsRecorded(5004, 'change-plan'));
        $this->waitUntil(function () { // the read shows the plan once the views have it
            $service = $this->service(5004);
            return $service['plan']['disk_mb'] === 2000 && $service['operation'] === null;
        }, 60, 'the plan change to be applied');
        self::assertNull($this->service(5004)['plan']['databases']);
        self::assertNull($this->service(5004)['last_error']);

        $refused = hostwright_ChangePackage(array_replace($params, ['configoption3' => 'lots']));
        self::assertStringContainsString('plan.disk_mb must be a whole number', $refused);
    }

    public function testCustomButtonsAndTerminate(): void
    {
        $params = $this->activeService(5005);
        self::assertSame('success', hostwright_VerifyRepair($params));
        self::assertSame(1, $this->commandsRecorded(5005, 'verify-repair'));
        self::assertSame('success', hostwright_Redeploy($params));
        self::assertSame('success', hostwright_FactoryReset($params));
        self::assertSame('success', hostwright_SyncNow($params));
        self::assertSame(1, $this->commandsRecorded(5005, 'redeploy'));
        self::assertSame(1, $this->commandsRecorded(5005, 'factory-reset'));
        self::assertSame(1, $this->commandsRecorded(5005, 'sync-usage'));
        // hostwright's SSL routes answer (with HOSTWRIGHT_SSL off they would not, and the module
        // says that instead), but this service has no certificate yet: nothing to issue, said so
        self::assertSame('hostwright has no certificate to issue for this service yet', hostwright_IssueSsl($params));
        $this->waitForStatus(5005, 'active');

        self::assertSame('success', hostwright_TerminateAccount($params));
        $this->waitForStatus(5005, 'terminated');
        self::assertSame('success', hostwright_TerminateAccount($params)); // nothing more to do
        self::assertSame(1, $this->commandsRecorded(5005, 'terminate'));
        self::assertStringContainsString('is terminated', hostwright_SuspendAccount($params));
    }

    public function testAnInvalidDomainIsRefusedReadablyAndNothingRecorded(): void
    {
        $said = hostwright_CreateAccount($this->params(5006, ['domain' => 'not a domain!']));
        self::assertStringStartsWith('hostwright refused the values: ', $said);
        self::assertStringContainsString('domain', $said);
        $latin1 = hostwright_CreateAccount($this->params(5006, ['domain' => "caf\xe9.example.org"]));
        self::assertStringStartsWith('the call to hostwright cannot be sent: a value in it is not UTF-8 text', $latin1);
        try {
            $this->service(5006);
            self::fail('a refused order was recorded');
        } catch (\WHMCS\Module\Server\Hostwright\GatewayError $error) {
            self::assertSame(404, $error->status());
        }
    }

    public function testATakenVanityLabelIsRefusedReadably(): void
    {
        $vanity = [
            'configoption1' => 'vanity',
            'configoption14' => self::env('VANITY_DOMAIN'),
            'domain' => '',
            'username' => '',
            'customfields' => ['Vanity label' => 'blog5007'],
        ];
        Capsule::$tables['tblhosting'] = [
            ['id' => 5007, 'server' => 1, 'domain' => ''],
            ['id' => 5077, 'server' => 1, 'domain' => ''],
        ];
        self::assertSame('success', hostwright_CreateAccount($this->params(5007, $vanity)));
        $built = 'blog5007.' . self::env('VANITY_DOMAIN');
        self::assertSame($built, $this->service(5007)['domain']);
        // WHMCS's service record gets the built domain: server sync and metric billing key by it
        self::assertSame($built, Capsule::table('tblhosting')->where('id', 5007)->first()->domain);
        self::assertSame('', Capsule::table('tblhosting')->where('id', 5077)->first()->domain);

        $said = hostwright_CreateAccount($this->params(5008, $vanity));
        self::assertStringStartsWith('hostwright refused it: ', $said);
        self::assertStringContainsString('the label blog5007 is already in use by service 5007', $said);

        $unlabelled = hostwright_CreateAccount($this->params(5009, array_replace($vanity, ['customfields' => []])));
        self::assertSame('a vanity order needs its label: the product custom field "Vanity label" is empty', $unlabelled);
    }

    public function testAGatewayThatCannotBeReachedIsAReadableErrorWithinTheTimeout(): void
    {
        $started = microtime(true);
        $said = hostwright_CreateAccount($this->paramsOfClosedGateway(5010));
        self::assertLessThan(5, microtime(true) - $started);
        $host = parse_url(self::env('GATEWAY'), PHP_URL_HOST);
        self::assertStringStartsWith("hostwright at http://{$host}:" . self::env('CLOSED_PORT') . ' cannot be reached', $said);
    }

    public function testAGatewayThatDoesNotAnswerIsAReadableErrorAfterTheTimeout(): void
    {
        $silent = stream_socket_server('tcp://127.0.0.1:0'); // accepts connections, never answers
        self::assertNotFalse($silent);
        $port = (int) substr(strrchr(stream_socket_get_name($silent, false), ':'), 1);
        try {
            $started = microtime(true);
            $said = hostwright_SuspendAccount($this->params(5011, ['serverport' => (string) $port]));
            $took = microtime(true) - $started;
        } finally {
            fclose($silent);
        }
        self::assertSame("hostwright at http://127.0.0.1:{$port} did not answer within 10 s: try again later", $said);
        self::assertGreaterThanOrEqual(9, $took);
        self::assertLessThan(15, $took);
    }

    public function testNoKeyAndNoLogHoldsAnyPartOfAPasswordsHash(): void
    {
        $params = $this->params(5013);
        $password = $params['password'];
        $passwordHash = hash('sha256', $password);
        $closed = array_replace($params, ['serverport' => self::env('CLOSED_PORT')]);
        // a row an older module left, its args_hash unkeyed: gone once it is a day old
        Capsule::schema()->create(PendingCalls::TABLE, function () {
        });
        Capsule::table(PendingCalls::TABLE)->insert(['service_id' => '5013', 'action' => 'suspend', 'args_hash' => hash('sha256', '[]'), 'idempotency_key' => 'whmcs-5013-suspend-44136fa3', 'created_at' => date('Y-m-d H:i:s', time() - 90000)]);
        // a change of password hostwright cannot be reached for: its key and args_hash stay
        self::assertStringContainsString('cannot be reached', hostwright_ChangePassword($closed));
        self::assertCount(1, Capsule::table(PendingCalls::TABLE)->get());
        $row = Capsule::table(PendingCalls::TABLE)->first();
        self::assertSame('change-password', $row->action);
        $plain = hash('sha256', json_encode(['password' => $passwordHash], JSON_UNESCAPED_SLASHES));
        $changeKey = (string) $row->idempotency_key;
        foreach ([$passwordHash, $plain, $row->args_hash] as $hash) { // hostwright logs the key
            for ($at = 0; $at + 8 <= strlen($hash); $at++) {
                self::assertStringNotContainsString(substr($hash, $at, 8), $changeKey, 'the key holds part of a hash of the arguments');
            }
        }
        self::assertMatchesRegularExpression('/^whmcs-5013-change-password-[0-9a-f]{16}$/', $changeKey);
        self::assertNotSame($plain, $row->args_hash, 'args_hash is an unkeyed hash of the password hash');
        self::assertSame(hash_hmac('sha256', json_encode(['password' => $passwordHash], JSON_UNESCAPED_SLASHES), self::env('TOKEN')), $row->args_hash);

        // an order with the password: its key goes to hostwright, which logs and keeps it
        self::assertStringContainsString('cannot be reached', hostwright_CreateAccount($closed));
        $orderRow = Capsule::table(PendingCalls::TABLE)->where('action', 'create')->first();
        self::assertSame('success', hostwright_CreateAccount($params));
        $orderKey = (string) $orderRow->idempotency_key;
        self::assertSame(1, $this->commandsRecorded(5013, 'create'));

        $logged = json_encode($GLOBALS['hostwright_module_log'], JSON_UNESCAPED_SLASHES | JSON_PARTIAL_OUTPUT_ON_ERROR);
        foreach ([$passwordHash, $plain, $row->args_hash, $orderRow->args_hash] as $hash) {
            for ($at = 0; $at + 8 <= strlen($hash); $at++) {
                $part = substr($hash, $at, 8);
                self::assertStringNotContainsString($part, $changeKey);
                self::assertStringNotContainsString($part, $orderKey);
                self::assertStringNotContainsString($part, $logged, 'the module log holds part of a hash of the arguments');
            }
        }
    }

    /** Every lifecycle function of the module: its name and what it needs in the parameters. */
    public static function lifecycleFunctions(): array
    {
        $functions = [
            'hostwright_CreateAccount', 'hostwright_SuspendAccount', 'hostwright_UnsuspendAccount',
            'hostwright_TerminateAccount', 'hostwright_ChangePackage', 'hostwright_ChangePassword',
            'hostwright_Redeploy', 'hostwright_FactoryReset', 'hostwright_VerifyRepair',
            'hostwright_SyncUsage', 'hostwright_SyncNow', 'hostwright_IssueSsl',
        ];
        return array_combine($functions, array_map(function ($function) {
            return [$function];
        }, $functions));
    }

    /** @var bool whether service 5601, the wrong credential's target, was ordered */
    private static $ordered5601 = false;

    /**
     * @dataProvider lifecycleFunctions
     */
    public function testEachLifecycleFunctionSaysReadablyWhenTheGatewayIsDownOrTheCredentialWrong(string $function): void
    {
        // the gateway down: a readable string, not an exception, within the connect timeout
        $started = microtime(true);
        $said = $function($this->paramsOfClosedGateway(5601));
        self::assertLessThan(\WHMCS\Module\Server\Hostwright\ApiClient::CONNECT_TIMEOUT_S + 2, microtime(true) - $started);
        self::assertIsString($said);
        self::assertStringContainsString('cannot be reached', $said);

        if (!self::$ordered5601) {
            self::assertSame('success', hostwright_CreateAccount($this->params(5601)));
            self::$ordered5601 = true;
        }
        Capsule::reset();
        $before = $this->moduleCommandsOf(5601);
        // a wrong credential: said so, and nothing recorded or kept pending
        $said = $function($this->params(5601, ['serveraccesshash' => str_repeat('x', 40)]));
        self::assertIsString($said);
        self::assertStringStartsWith('hostwright refused the credential', $said);
        self::assertStringContainsString('Access Hash', $said);
        self::assertSame($before, $this->moduleCommandsOf(5601));
        self::assertCount(0, Capsule::schema()->hasTable(PendingCalls::TABLE) ? Capsule::table(PendingCalls::TABLE)->get() : []);
    }

    /** The ids of every command the module recorded for the service (its events name them). */
    private function moduleCommandsOf(int $serviceId): array
    {
        $ids = [];
        foreach ($this->hostwright()->get("/v1/services/{$serviceId}/events", [], 'test')['events'] as $event) {
            $id = (string) ($event['data']['command_id'] ?? '');
            if (strpos($id, 'whmcs-') === 0) {
                $ids[$id] = true;
            }
        }
        ksort($ids);
        return array_keys($ids);
    }

    public function testARepeatedUnsuspendRecordsOneCommandAndAnUnknownServiceIsRefused(): void
    {
        $params = $this->activeService(5014);
        self::assertSame('success', hostwright_SuspendAccount($params));
        $this->waitForStatus(5014, 'suspended');
        self::assertSame('success', hostwright_UnsuspendAccount($params));
        $this->waitForStatus(5014, 'active');
        self::assertSame('success', hostwright_UnsuspendAccount($params)); // active already
        self::assertSame(1, $this->commandsRecorded(5014, 'unsuspend'));

        $said = hostwright_UnsuspendAccount($this->params(5998)); // never ordered
        self::assertIsString($said);
        self::assertMatchesRegularExpression('/^hostwright(:| refused it:) .*5998/', $said);
        self::assertCount(0, Capsule::table(PendingCalls::TABLE)->get()); // answered: nothing kept
    }
}
