<?php

/** The customer's product page, single sign-on and the admin's service tab. */
class ClientAreaTest extends GatewayTestCase
{
    public function testTheProductPageOffersAFreshClientLink(): void
    {
        $params = $this->params(5201);
        self::assertSame('success', hostwright_CreateAccount($params));

        $page = hostwright_ClientArea($params);
        self::assertSame('templates/clientarea.tpl', $page['tabOverviewModuleOutputTemplate']);
        self::assertFileExists(HOSTWRIGHT_MODULE_DIR . '/' . $page['tabOverviewModuleOutputTemplate']);
        $link = $page['templateVariables']['hostwrightClientLink'];
        self::assertStringStartsWith(self::env('GATEWAY') . '/client/5201?token=', $link);
        self::assertSame(200, $this->statusOf($link)); // the splash, as the customer opens it
        $template = file_get_contents(HOSTWRIGHT_MODULE_DIR . '/templates/clientarea.tpl');
        self::assertStringContainsString('{$hostwrightClientLink|escape', $template);
        self::assertStringContainsString('target="_blank"', $template);
    }

    public function testSingleSignOnRedirectsToTheClientArea(): void
    {
        $params = $this->params(5202);
        self::assertSame('success', hostwright_CreateAccount($params));
        $sso = hostwright_ServiceSingleSignOn($params);
        self::assertTrue($sso['success']);
        self::assertStringStartsWith(self::env('GATEWAY') . '/client/5202?token=', $sso['redirectTo']);
        self::assertSame(200, $this->statusOf($sso['redirectTo']));

        $unknown = hostwright_ServiceSingleSignOn($this->params(5299));
        self::assertSame(['success' => false, 'errorMsg' => 'hostwright: service 5299 not found'], $unknown);
    }

    public function testAGatewayDownShowsTheErrorPage(): void
    {
        $page = hostwright_ClientArea($this->paramsOfClosedGateway(5203));
        self::assertSame('templates/error.tpl', $page['tabOverviewModuleOutputTemplate']);
        self::assertFileExists(HOSTWRIGHT_MODULE_DIR . '/templates/error.tpl');
        self::assertStringContainsString('cannot be reached', $page['templateVariables']['hostwrightError']);
        $sso = hostwright_ServiceSingleSignOn($this->paramsOfClosedGateway(5203));
        self::assertFalse($sso['success']);
        self::assertStringContainsString('cannot be reached', $sso['errorMsg']);
    }

    public function testTheAdminTabShowsStatusProgressAndTheConsoleLink(): void
    {
        $params = $this->activeService(5204);
        $fields = hostwright_AdminServicesTabFields($params);
        self::assertSame('active', $fields['hostwright status']);
        self::assertSame('none', $fields['Operation']);
        self::assertMatchesRegularExpression('/^(\d+) of \1 steps \(100%\)$/', $fields['Progress']);
        self::assertSame('none', $fields['Last error']);
        $console = self::env('GATEWAY') . '/admin/services/5204';
        self::assertStringContainsString('href="' . $console . '"', $fields['Staff console']);
        self::assertNotSame(404, $this->statusOf($console)); // the console's page (its sign-in first)

        $down = hostwright_AdminServicesTabFields($this->paramsOfClosedGateway(5204));
        self::assertStringContainsString('cannot be reached', $down['hostwright']);
        self::assertSame(['Sync now' => 'SyncNow'], hostwright_ClientAreaCustomButtonArray());
        foreach (hostwright_AdminCustomButtonArray() as $function) {
            self::assertTrue(function_exists('hostwright_' . $function), $function);
        }
    }

    private function statusOf(string $url): int
    {
        $curl = curl_init($url);
        curl_setopt_array($curl, [CURLOPT_RETURNTRANSFER => true, CURLOPT_TIMEOUT => 10, CURLOPT_FOLLOWLOCATION => false]);
        curl_exec($curl);
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        curl_close($curl);
        return $status;
    }
}
